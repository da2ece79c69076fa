//! Signals as events for the loop: handlers set a flag and write a byte to a pipe the
//! loop polls (signal-hook does both, async-signal-safely).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// Which signals came since the last `take`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub child: bool,
    pub reload: bool,
    pub shutdown: bool,
}

pub struct Signals {
    wake: UnixStream,
    child: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let signals = Signals {
            wake,
            child: Arc::default(),
            reload: Arc::default(),
            shutdown: Arc::default(),
        };
        for (signal, flag) in [
            (SIGCHLD, &signals.child),
            (SIGHUP, &signals.reload),
            (SIGTERM, &signals.shutdown),
            (SIGINT, &signals.shutdown),
        ] {
            signal_hook::flag::register(signal, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(signals)
    }

    /// Signals with no handler behind them, for unit tests of the loop's parts: a test
    /// binary's own signals are left alone.
    #[cfg(test)]
    pub fn unregistered() -> io::Result<Signals> {
        let (wake, _) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        Ok(Signals {
            wake,
            child: Arc::default(),
            reload: Arc::default(),
            shutdown: Arc::default(),
        })
    }

    /// Polled for readability: a signal came.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Drain the wake-up pipe and report the signals that came. Many SIGCHLDs (or
    /// SIGHUPs) in a row coalesce into one event.
    pub fn take(&mut self) -> Pending {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        Pending {
            child: self.child.swap(false, Ordering::AcqRel),
            reload: self.reload.swap(false, Ordering::AcqRel),
            shutdown: self.shutdown.swap(false, Ordering::AcqRel),
        }
    }
}
