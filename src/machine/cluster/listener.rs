//! The LISTEN connection: a session of its own (`listen_url`, or `database_url`), on
//! the one-off and stop channels, checked every few seconds with
//! `pg_listening_channels()` (a connection can stop listening without breaking, behind
//! a pooler that reconnected) and replaced when that check fails.

use std::time::{Duration, Instant};

use log::{info, warn};

use crate::adapter::cluster::oneoff::Listening;
use crate::adapter::cluster::{ONEOFF_CHANNEL, Operation, STOP_CHANNEL};
use crate::adapter::postgres::{Event, Interest, Libpq, Notification, Ready, Session, Settings};

/// How often the connection proves it still listens.
const CHECK_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Listener {
    lib: &'static Libpq,
    settings: Settings,
    session: Session,
    checking: bool,
    next_check: Instant,
    /// Listening now (connected and subscribed).
    up: bool,
}

/// What one turn of the listener brought.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// (Re)connected and listening: whatever was announced meanwhile was missed.
    pub connected: bool,
    pub notifications: Vec<Notification>,
}

impl Listener {
    pub fn new(lib: &'static Libpq, conninfo: &str, now: Instant) -> Listener {
        let mut settings = Settings::new(conninfo);
        settings.listen = vec![ONEOFF_CHANNEL.to_string(), STOP_CHANNEL.to_string()];
        settings.query_timeout = Duration::from_secs(10);
        Listener {
            lib,
            session: Session::new(lib, settings.clone()),
            settings,
            checking: false,
            next_check: now + CHECK_EVERY,
            up: false,
        }
    }

    pub fn interest(&self) -> Interest {
        let mut interest = self.session.interest();
        if self.up && !self.checking {
            interest.deadline = Some(
                interest
                    .deadline
                    .map_or(self.next_check, |d| d.min(self.next_check)),
            );
        }
        interest
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Why it is not listening, while it is not.
    pub fn down_reason(&self) -> Option<&str> {
        self.session.down_reason()
    }

    pub fn advance(&mut self, now: Instant, ready: Ready) -> Heard {
        let mut heard = Heard::default();
        for event in self.session.advance(now, ready) {
            match event {
                Event::Connected => {
                    if !self.up {
                        info!(
                            "cluster: listening for one-off jobs and stop requests ({}, {})",
                            ONEOFF_CHANNEL, STOP_CHANNEL
                        );
                    }
                    self.up = true;
                    self.next_check = now + CHECK_EVERY;
                    heard.connected = true;
                }
                Event::Broken { error, .. } => {
                    if self.up {
                        warn!(
                            "cluster: the listening connection broke ({error}); one-off jobs \
                             are found by polling every few seconds until it is back"
                        );
                    }
                    self.up = false;
                    self.checking = false;
                }
                Event::Done(result) => {
                    self.checking = false;
                    self.next_check = now + CHECK_EVERY;
                    let listening = result
                        .map_err(|e| e.to_string())
                        .and_then(|rows| Listening::decode(&rows).map_err(|e| e.to_string()));
                    match listening {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(
                                "cluster: the listening connection no longer listens on {}; \
                                 connecting again",
                                ONEOFF_CHANNEL
                            );
                            self.replace(now);
                        }
                        Err(e) => warn!("cluster: checking the listening connection failed: {e}"),
                    }
                }
            }
        }
        heard.notifications = self.session.take_notifications();
        if self.up && !self.checking && now >= self.next_check && self.session.is_idle() {
            let check = Listening {
                channel: ONEOFF_CHANNEL.to_string(),
            };
            match self.session.send(&check.query(), now) {
                Ok(()) => self.checking = true,
                Err(e) => {
                    warn!("cluster: checking the listening connection failed: {e:?}");
                    self.next_check = now + CHECK_EVERY;
                }
            }
        }
        heard
    }

    /// A new connection in place of one that stopped listening.
    fn replace(&mut self, now: Instant) {
        self.session = Session::new(self.lib, self.settings.clone());
        self.session.retry_now(now);
        self.up = false;
        self.checking = false;
    }
}
