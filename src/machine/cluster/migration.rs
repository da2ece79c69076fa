//! The schema migration at start-up, on a thread of its own: jobd starts (its control
//! socket, its `cluster: local` jobs) whether or not the database answers, and the
//! migration is done as soon as it does. The thread ends once the schema is up to date,
//! or when a newer jobd's schema rules this one out; it wakes the loop through a pipe.

use std::io::{PipeReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use crate::adapter::cluster::schema::{self, MigrateError, Migrated};
use crate::adapter::postgres::{Libpq, Session, Settings};

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Done(Migrated),
    /// It failed; the thread tries again after a while unless `fatal`.
    Failed {
        error: String,
        fatal: bool,
    },
}

/// The loop's end of the migration thread.
pub struct Migration {
    wake: PipeReader,
    outcomes: Receiver<Attempt>,
    /// The thread has said its last word.
    finished: bool,
}

/// The first wait after a failed attempt; it doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// One attempt: connecting, then waiting for any concurrent migration and applying the
/// steps.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

impl Migration {
    /// Start migrating the database behind `conninfo`.
    pub fn start(lib: &'static Libpq, conninfo: String) -> std::io::Result<Migration> {
        let (wake, mut waker) = std::io::pipe()?;
        nix::fcntl::fcntl(
            wake.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let (sender, outcomes) = channel();
        std::thread::Builder::new()
            .name("jobd-migrate".to_string())
            .spawn(move || {
                let mut wait = FIRST_RETRY;
                loop {
                    let attempt = migrate_once(lib, &conninfo);
                    let last = !matches!(attempt, Attempt::Failed { fatal: false, .. });
                    if sender.send(attempt).is_err() {
                        return;
                    }
                    let _ = waker.write_all(&[1]);
                    if last {
                        return;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_RETRY);
                }
            })?;
        Ok(Migration {
            wake,
            outcomes,
            finished: false,
        })
    }

    /// The pipe to poll, while the thread may still say something.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.finished).then(|| self.wake.as_fd())
    }

    /// What the thread reported since the last call.
    pub fn take(&mut self) -> Vec<Attempt> {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        let mut attempts = Vec::new();
        loop {
            match self.outcomes.try_recv() {
                Ok(attempt) => attempts.push(attempt),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.finished = true;
                    break;
                }
            }
        }
        attempts
    }
}

fn migrate_once(lib: &'static Libpq, conninfo: &str) -> Attempt {
    let mut settings = Settings::new(conninfo);
    settings.query_timeout = ATTEMPT_TIMEOUT;
    let mut session = match Session::connect_blocking(lib, settings, ATTEMPT_TIMEOUT) {
        Ok(session) => session,
        Err(e) => {
            return Attempt::Failed {
                error: e.to_string(),
                fatal: false,
            };
        }
    };
    match schema::migrate(&mut session, ATTEMPT_TIMEOUT) {
        Ok(migrated) => Attempt::Done(migrated),
        Err(error) => Attempt::Failed {
            fatal: matches!(error, MigrateError::TooNew { .. }),
            error: error.to_string(),
        },
    }
}
