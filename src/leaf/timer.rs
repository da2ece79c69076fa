//! The wall-clock timer the loop sleeps on: a timerfd armed at the next absolute instant.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// What reading the timer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// Nothing: a spurious wake-up.
    Nothing,
    /// The instant it was armed for has come.
    Expired,
    /// The wall clock was set (an NTP step, an admin, a resume): re-plan.
    ClockChanged,
}

/// CLOCK_REALTIME with cancel-on-set: schedules are wall-clock instants, and a step of
/// the clock must wake the loop at once rather than leave it asleep on a stale deadline.
pub struct Timer {
    fd: TimerFd,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Timer { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Arm at `at`, or disarm when there is nothing to wait for. Even a disarmed timer
    /// stays cancel-on-set armed far in the future, so that clock steps are seen.
    pub fn arm(&self, at: Option<DateTime<Utc>>) -> io::Result<()> {
        // Year 9999: "never", while keeping the clock-change notification.
        let at = at.unwrap_or(DateTime::<Utc>::MAX_UTC);
        let secs = at.timestamp().min(253_402_300_799);
        let nanos = i64::from(at.timestamp_subsec_nanos());
        // A zero expiration would disarm the timer: the epoch itself is never a deadline.
        let spec = TimeSpec::new(secs.max(0), if secs <= 0 { nanos.max(1) } else { nanos });
        self.fd.set(
            Expiration::OneShot(spec),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )?;
        Ok(())
    }

    /// Read the timer after poll said it is readable.
    pub fn read(&self) -> io::Result<Fired> {
        let mut count = [0u8; 8];
        match nix::unistd::read(&self.fd, &mut count) {
            Ok(_) => Ok(Fired::Expired),
            Err(Errno::ECANCELED) => Ok(Fired::ClockChanged),
            Err(Errno::EAGAIN) => Ok(Fired::Nothing),
            Err(e) => Err(e.into()),
        }
    }
}
