//! A connection the daemon drives from its poll loop: a small state machine that
//! connects, runs one query at a time, keeps the channels it LISTENs to across
//! reconnects, and when the connection breaks, waits (with a growing backoff) and
//! reconnects, without ever blocking the loop on a slow or absent database.
//!
//! ```text
//!   waiting ──retry due──▶ connecting ──ok──▶ subscribing ──▶ idle ◀──result── busy
//!      ▲                       │                   │           │  └───send───▶  │
//!      └──────────── broken: failed, timed out, or the server went away ◀──────┘
//! ```
//! Each turn of the loop: put `interest()` in the poll set (its fd, events and
//! deadline), then call `advance` with what poll reported; it returns what happened.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::connection::{Connection, Flush, Notification, Polling};
use super::library::Libpq;
use super::rows::{Query, QueryError, Rows};

/// How to reach the database and how patient to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A libpq connection string: a URI or `key=value` words; empty means libpq's
    /// defaults (PGHOST, PGSERVICE, … from the environment).
    pub conninfo: String,
    /// libpq ignores `connect_timeout` in non-blocking connects: this bounds each
    /// attempt instead (all hosts of a multi-host string together).
    pub connect_timeout: Duration,
    /// How long one query may take before the connection is given up.
    pub query_timeout: Duration,
    /// Channels to LISTEN to after every (re)connect.
    pub listen: Vec<String>,
    /// The first wait before reconnecting; it doubles after each failed attempt up to
    /// `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Settings {
    pub fn new(conninfo: &str) -> Settings {
        Settings {
            conninfo: conninfo.to_string(),
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
            listen: Vec::new(),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// jobd's defaults, placed before the user's connection string so that the string
/// overrides any of them. TCP keepalives (probes after 10 s idle, every 5 s, 3 misses)
/// and a 30 s user timeout make a vanished server or a cut network show up as a broken
/// connection within a minute, instead of the kernel's two hours, which matters most
/// for a LISTEN connection that otherwise only ever reads.
pub const DEFAULT_OPTIONS: &[(&str, &str)] = &[
    ("application_name", "jobd"),
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

/// What poll reported for the session's socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    pub read: bool,
    pub write: bool,
}

impl Ready {
    /// From poll's `revents`: an error or hang-up counts as both, so that libpq gets
    /// to see it and report it.
    pub fn from_revents(revents: PollFlags) -> Ready {
        let failed =
            revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL);
        Ready {
            read: failed || revents.contains(PollFlags::POLLIN),
            write: failed || revents.contains(PollFlags::POLLOUT),
        }
    }
}

/// What the session wants from the poll loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// The socket to poll, with `events`; None while waiting to reconnect.
    pub fd: Option<RawFd>,
    pub events: PollFlags,
    /// Call `advance` by then even if the socket stays quiet.
    pub deadline: Option<Instant>,
}

/// What `advance` saw happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Connected (again) and listening: anything announced while away was missed, so
    /// fetch once.
    Connected,
    /// The query sent with `send` finished.
    Done(Result<Rows, QueryError>),
    /// The connection failed or broke; the session retries after a backoff. When
    /// `in_flight`, a query had been sent and its fate is unknown: it may have
    /// committed.
    Broken { error: String, in_flight: bool },
}

/// Why `send` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not connected, or a query is still running.
    NotReady,
    /// The connection broke while sending; the session now waits to reconnect.
    Broken(String),
}

#[derive(Debug)]
enum Phase {
    Waiting {
        retry_at: Instant,
    },
    Connecting {
        reading: bool,
        reset: bool,
        deadline: Instant,
    },
    Subscribing(Exchange),
    Idle,
    Busy(Exchange),
}

/// A query on the wire.
#[derive(Debug)]
struct Exchange {
    flushing: bool,
    deadline: Instant,
    outcome: Option<Result<Rows, QueryError>>,
}

pub struct Session {
    lib: &'static Libpq,
    settings: Settings,
    conn: Option<Connection>,
    phase: Phase,
    failures: u32,
    /// Why the last attempt failed, while not connected.
    down: Option<String>,
    notifications: VecDeque<Notification>,
}

impl Session {
    /// A session that connects at its first `advance`.
    pub fn new(lib: &'static Libpq, settings: Settings) -> Session {
        Session {
            lib,
            settings,
            conn: None,
            phase: Phase::Waiting {
                retry_at: Instant::now(),
            },
            failures: 0,
            down: None,
            notifications: VecDeque::new(),
        }
    }

    /// Connected, with no query running: `send` will be accepted.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    /// Connected (idle or running a query).
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Busy(_))
    }

    /// While not connected: why the last attempt failed or the connection broke.
    pub fn down_reason(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// Notifications received so far, oldest first.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.notifications.drain(..).collect()
    }

    pub fn interest(&self) -> Interest {
        let fd = self.conn.as_ref().and_then(Connection::socket);
        let (events, deadline) = match &self.phase {
            Phase::Waiting { retry_at } => {
                return Interest {
                    fd: None,
                    events: PollFlags::empty(),
                    deadline: Some(*retry_at),
                };
            }
            Phase::Connecting {
                reading, deadline, ..
            } => (
                if *reading {
                    PollFlags::POLLIN
                } else {
                    PollFlags::POLLOUT
                },
                Some(*deadline),
            ),
            Phase::Subscribing(exchange) | Phase::Busy(exchange) => (
                if exchange.flushing {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                },
                Some(exchange.deadline),
            ),
            Phase::Idle => (PollFlags::POLLIN, None),
        };
        Interest {
            fd,
            events,
            deadline,
        }
    }

    /// Move on with what poll reported (`Ready::default()` when only the deadline
    /// passed).
    pub fn advance(&mut self, now: Instant, ready: Ready) -> Vec<Event> {
        let mut events = Vec::new();
        match self.phase {
            Phase::Waiting { retry_at } if now >= retry_at => {
                self.start_connecting(now, &mut events)
            }
            Phase::Waiting { .. } => {}
            Phase::Connecting {
                reading,
                reset,
                deadline,
            } => {
                if (reading && ready.read) || (!reading && ready.write) {
                    self.connect_step(now, reset, deadline, &mut events);
                } else if now >= deadline {
                    let error = format!(
                        "cannot connect to PostgreSQL at {}: no answer within {:?}",
                        self.target(),
                        self.settings.connect_timeout
                    );
                    events.push(self.broken(now, error, false));
                }
            }
            Phase::Idle => {
                if ready.read {
                    self.read_idle(now, &mut events);
                }
            }
            Phase::Subscribing(_) | Phase::Busy(_) => self.exchange_step(now, ready, &mut events),
        }
        events
    }

    /// Send `query`; its result comes as `Event::Done` from a later `advance`.
    pub fn send(&mut self, query: &Query, now: Instant) -> Result<(), SendError> {
        if !self.is_idle() {
            return Err(SendError::NotReady);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::NotReady);
        };
        let sent = if query.script {
            conn.send_script(&query.sql)
        } else {
            conn.send_query(&query.sql, &query.params)
        };
        let flushed = sent.and_then(|()| match conn.flush() {
            Flush::Failed => Err(conn.error_message()),
            flush => Ok(flush),
        });
        match flushed {
            Ok(flush) => {
                self.phase = Phase::Busy(Exchange {
                    flushing: flush == Flush::Pending,
                    deadline: now + self.settings.query_timeout,
                    outcome: None,
                });
                Ok(())
            }
            Err(reason) => {
                let error = self.lost_message(&reason);
                self.broken(now, error.clone(), false);
                Err(SendError::Broken(error))
            }
        }
    }

    /// Reconnect at the next `advance` instead of after the backoff (the blocking
    /// helpers use it: they have their own deadline).
    pub fn retry_now(&mut self, now: Instant) {
        if let Phase::Waiting { retry_at } = &mut self.phase {
            *retry_at = now;
        }
    }

    fn start_connecting(&mut self, now: Instant, events: &mut Vec<Event>) {
        let deadline = now + self.settings.connect_timeout;
        if let Some(conn) = self.conn.as_mut() {
            if conn.reset_start() {
                self.phase = Phase::Connecting {
                    reading: false,
                    reset: true,
                    deadline,
                };
                return;
            }
            let error = format!(
                "cannot reconnect to PostgreSQL at {}: {}",
                conn.target(),
                conn.error_message()
            );
            self.conn = None;
            events.push(self.broken(now, error, false));
            return;
        }
        match Connection::start(self.lib, DEFAULT_OPTIONS, &self.settings.conninfo) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.phase = Phase::Connecting {
                    reading: false,
                    reset: false,
                    deadline,
                };
            }
            Err(reason) => {
                let error = format!("cannot connect to PostgreSQL: {reason}");
                events.push(self.broken(now, error, false));
            }
        }
    }

    fn connect_step(
        &mut self,
        now: Instant,
        reset: bool,
        deadline: Instant,
        events: &mut Vec<Event>,
    ) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let polling = if reset {
            conn.poll_reset()
        } else {
            conn.poll_connect()
        };
        match polling {
            Polling::Reading | Polling::Writing => {
                self.phase = Phase::Connecting {
                    reading: polling == Polling::Reading,
                    reset,
                    deadline,
                };
            }
            Polling::Failed => {
                let error = format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    conn.target(),
                    conn.error_message()
                );
                events.push(self.broken(now, error, false));
            }
            Polling::Ok => {
                if let Err(reason) = conn.set_nonblocking() {
                    let error = self.lost_message(&reason);
                    events.push(self.broken(now, error, false));
                    return;
                }
                self.subscribe(now, events);
            }
        }
    }

    /// LISTEN again to every channel, then report `Connected`.
    fn subscribe(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.failures = 0;
        self.down = None;
        if self.settings.listen.is_empty() {
            self.phase = Phase::Idle;
            events.push(Event::Connected);
            return;
        }
        let script: Vec<String> = self
            .settings
            .listen
            .iter()
            .map(|channel| format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
            .collect();
        self.phase = Phase::Idle;
        match self.send(&Query::script(script.join("; ")), now) {
            Ok(()) => {
                if let Phase::Busy(exchange) = std::mem::replace(&mut self.phase, Phase::Idle) {
                    self.phase = Phase::Subscribing(exchange);
                }
            }
            Err(SendError::Broken(error)) => events.push(Event::Broken {
                error,
                in_flight: false,
            }),
            Err(SendError::NotReady) => unreachable!("the session was just made idle"),
        }
    }

    fn read_idle(&mut self, now: Instant, events: &mut Vec<Event>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !conn.consume_input() || conn.is_bad() {
            let error = self.lost_message(&self.conn_error());
            events.push(self.broken(now, error, false));
            return;
        }
        self.collect_notifications();
    }

    fn exchange_step(&mut self, now: Instant, ready: Ready, events: &mut Vec<Event>) {
        let (Some(conn), Phase::Subscribing(exchange) | Phase::Busy(exchange)) =
            (self.conn.as_mut(), &mut self.phase)
        else {
            return;
        };
        let mut failure = None;
        if ready.read && !conn.consume_input() {
            failure = Some(conn.error_message());
        }
        if failure.is_none() && exchange.flushing && (ready.read || ready.write) {
            match conn.flush() {
                Flush::Done => exchange.flushing = false,
                Flush::Pending => {}
                Flush::Failed => failure = Some(conn.error_message()),
            }
        }
        let mut finished = false;
        while failure.is_none() && !exchange.flushing && !conn.is_busy() {
            match conn.next_result() {
                // Of several results (a script), keep the first error, else the last.
                Some(result) => {
                    if !matches!(exchange.outcome, Some(Err(_))) {
                        exchange.outcome = Some(result);
                    }
                }
                None => {
                    finished = true;
                    break;
                }
            }
        }
        if failure.is_none() && !finished && conn.is_bad() {
            failure = Some(conn.error_message());
        }
        let deadline = exchange.deadline;
        self.collect_notifications();
        if let Some(reason) = failure {
            let error = self.lost_message(&reason);
            events.push(self.broken(now, error, true));
            return;
        }
        if finished {
            let phase = std::mem::replace(&mut self.phase, Phase::Idle);
            match phase {
                Phase::Busy(exchange) => events.push(Event::Done(
                    exchange.outcome.unwrap_or_else(|| Ok(Rows::default())),
                )),
                Phase::Subscribing(Exchange {
                    outcome: Some(Err(e)),
                    ..
                }) => {
                    let error = format!("cannot LISTEN on PostgreSQL at {}: {e}", self.target());
                    events.push(self.broken(now, error, false));
                }
                _ => events.push(Event::Connected),
            }
        } else if now >= deadline {
            let error = format!(
                "PostgreSQL at {} did not answer within {:?}; the connection is given up",
                self.target(),
                self.settings.query_timeout
            );
            events.push(self.broken(now, error, true));
        }
    }

    fn collect_notifications(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            while let Some(notification) = conn.next_notification() {
                self.notifications.push_back(notification);
            }
        }
    }

    /// Give the connection up: wait out the backoff, then reconnect.
    fn broken(&mut self, now: Instant, error: String, in_flight: bool) -> Event {
        let in_flight = in_flight && matches!(self.phase, Phase::Busy(_));
        let backoff = self
            .settings
            .min_backoff
            .saturating_mul(1 << self.failures.min(16))
            .min(self.settings.max_backoff);
        self.failures += 1;
        self.phase = Phase::Waiting {
            retry_at: now + backoff,
        };
        self.down = Some(error.clone());
        Event::Broken { error, in_flight }
    }

    fn target(&self) -> String {
        self.conn
            .as_ref()
            .map_or_else(|| "(not resolved)".to_string(), Connection::target)
    }

    fn conn_error(&self) -> String {
        self.conn
            .as_ref()
            .map_or_else(String::new, Connection::error_message)
    }

    fn lost_message(&self, reason: &str) -> String {
        format!(
            "lost the connection to PostgreSQL at {}: {reason}",
            self.target()
        )
    }
}
