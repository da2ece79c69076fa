//! Waiting for a session with `poll` on its own socket, for the places where nothing
//! else runs meanwhile: `jobd migrate`, start-up checks, tests and benchmarks. The
//! daemon's loop uses `Session::interest`/`advance` instead.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::connection::Notification;
use super::library::{Libpq, LoadError};
use super::rows::{DecodeError, Query, QueryError, Rows};
use super::session::{Event, Ready, SendError, Session, Settings};

/// Why a blocking call gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// libpq is missing.
    Load(LoadError),
    /// Could not connect, or the connection broke (the message says where and why).
    /// When `in_flight`, a query had been sent and may have committed.
    Unavailable { message: String, in_flight: bool },
    /// The server refused or failed the query.
    Query(QueryError),
    /// The result does not have the expected shape.
    Decode(DecodeError),
    /// Nothing within the time allowed.
    Timeout { what: &'static str, after: Duration },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(e) => e.fmt(f),
            Error::Unavailable { message, .. } => f.write_str(message),
            Error::Query(e) => write!(f, "PostgreSQL refused the query: {e}"),
            Error::Decode(e) => e.fmt(f),
            Error::Timeout { what, after } => {
                write!(f, "PostgreSQL: {what} did not finish within {after:?}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Error {
        Error::Load(e)
    }
}

impl From<QueryError> for Error {
    fn from(e: QueryError) -> Error {
        Error::Query(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        Error::Decode(e)
    }
}

impl Session {
    /// A session connected within `timeout`, or why not.
    pub fn connect_blocking(
        lib: &'static Libpq,
        settings: Settings,
        timeout: Duration,
    ) -> Result<Session, Error> {
        let mut session = Session::new(lib, settings);
        session.wait_idle(&Budget::new("connecting", timeout))?;
        Ok(session)
    }

    /// Run `query` and wait for its result, connecting first if need be (at once,
    /// whatever the backoff): at most `timeout` in all. Not for a session the poll loop
    /// drives: a query it sent would be waited out and its result dropped.
    pub fn exec_blocking(&mut self, query: &Query, timeout: Duration) -> Result<Rows, Error> {
        let budget = Budget::new("the query", timeout);
        self.wait_idle(&budget)?;
        match self.send(query, Instant::now()) {
            Ok(()) => {}
            Err(SendError::Broken(message)) => {
                return Err(Error::Unavailable {
                    message,
                    in_flight: false,
                });
            }
            Err(SendError::NotReady) => unreachable!("wait_idle returned on an idle session"),
        }
        loop {
            for event in self.turn(&budget)? {
                match event {
                    Event::Done(result) => return result.map_err(Error::Query),
                    Event::Broken { error, in_flight } => {
                        return Err(Error::Unavailable {
                            message: error,
                            in_flight,
                        });
                    }
                    Event::Connected => {}
                }
            }
        }
    }

    /// Wait up to `timeout` for a notification (on the channels in `Settings::listen`).
    pub fn wait_notification(&mut self, timeout: Duration) -> Result<Notification, Error> {
        let budget = Budget::new("waiting for a notification", timeout);
        loop {
            if let Some(notification) = self.take_notifications().into_iter().next() {
                return Ok(notification);
            }
            self.wait_idle(&budget)?;
            for event in self.turn(&budget)? {
                if let Event::Broken { error, in_flight } = event {
                    return Err(Error::Unavailable {
                        message: error,
                        in_flight,
                    });
                }
            }
        }
    }

    fn wait_idle(&mut self, budget: &Budget) -> Result<(), Error> {
        self.retry_now(Instant::now());
        while !self.is_idle() {
            for event in self.turn(budget)? {
                if let Event::Broken { error, in_flight } = event {
                    return Err(Error::Unavailable {
                        message: error,
                        in_flight,
                    });
                }
            }
        }
        Ok(())
    }

    /// One poll on the session's socket, bounded by both deadlines, and one `advance`.
    fn turn(&mut self, budget: &Budget) -> Result<Vec<Event>, Error> {
        let now = Instant::now();
        if now >= budget.deadline {
            return Err(Error::Timeout {
                what: budget.what,
                after: budget.total,
            });
        }
        let interest = self.interest();
        let until = interest
            .deadline
            .map_or(budget.deadline, |d| d.min(budget.deadline));
        let wait = until.saturating_duration_since(now);
        let timeout =
            PollTimeout::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
        let ready = match interest.fd {
            Some(fd) => {
                // SAFETY: the fd is libpq's socket for this session, open until the
                // session changes state, which cannot happen during this poll.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let mut fds = [PollFd::new(fd, interest.events)];
                match poll(&mut fds, timeout) {
                    Ok(_) => Ready::from_revents(fds[0].revents().unwrap_or(PollFlags::empty())),
                    Err(nix::errno::Errno::EINTR) => Ready::default(),
                    Err(e) => {
                        return Err(Error::Unavailable {
                            message: format!("poll on the PostgreSQL socket failed: {e}"),
                            in_flight: false,
                        });
                    }
                }
            }
            None => {
                std::thread::sleep(wait);
                Ready::default()
            }
        };
        Ok(self.advance(Instant::now(), ready))
    }
}

/// How long a blocking call may take, and what to call it when it runs out.
struct Budget {
    what: &'static str,
    total: Duration,
    deadline: Instant,
}

impl Budget {
    fn new(what: &'static str, total: Duration) -> Budget {
        Budget {
            what,
            total,
            deadline: Instant::now() + total,
        }
    }
}
