//! The daemon's side of the socket: non-blocking, bounded, so that no client (slow,
//! stuck, hostile or merely many) can stall the event loop.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{info, warn};
use nix::poll::PollFlags;

use super::access::{Groups, Peer, UnknownGroup};
use super::protocol::{Body, MAX_ANSWER, MAX_REQUEST, Request, Response, VERSION};
use crate::leaf::files;

/// Connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 64;
/// How long the listener rests after running out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Evictions and refusals are logged at most this often: any local user may connect.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How far a streaming client may fall behind before lines are dropped for it.
const MAX_STREAMED: usize = 1 << 20;
/// How long a client may take to send its request, and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ControlError {
    /// Another jobd answers on the socket.
    InUse(PathBuf),
    UnknownGroup(UnknownGroup),
    Bind {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::InUse(path) => write!(
                f,
                "another jobd is already running on the control socket {}",
                path.display()
            ),
            ControlError::UnknownGroup(err) => write!(f, "{err}"),
            ControlError::Bind { path, error } => {
                write!(
                    f,
                    "cannot listen on the control socket {}: {error}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ControlError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request line.
    Reading,
    /// The request is being worked on (a `run --wait` waits here for the run's end).
    Working,
    /// Sending the answer; closed when sent.
    Writing,
}

struct Client {
    id: u64,
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// Streamed lines dropped since the last one sent: the client read too slowly.
    dropped: u64,
    phase: Phase,
    /// Reading or writing must be done by then; a waiting client has none.
    deadline: Option<Instant>,
    /// Who it is and what it may ask. A peer that may ask nothing still has its
    /// request read (closing a socket with unread data would reset the connection
    /// before the refusal is read), then is refused.
    peer: Peer,
}

/// A request from a client, for the daemon to answer with `respond`.
pub struct Incoming {
    pub client: u64,
    pub request: Request,
}

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    groups: Groups,
    clients: Vec<Client>,
    next_id: u64,
    /// Accepting failed (no file descriptor left): the listener rests until then.
    paused_until: Option<Instant>,
    /// Idle clients closed to make room.
    evicted: Tally,
    /// Requests refused for want of permission.
    refused: Tally,
}

/// Events logged at most every `REPORT_EVERY`: those in between are counted, and
/// their number logged later.
#[derive(Debug, Default)]
struct Tally {
    unreported: u64,
    reported_at: Option<Instant>,
}

impl Tally {
    /// Whether an event may be logged now; if not, it is counted.
    fn log_now(&mut self, now: Instant) -> bool {
        if self.quiet(now) {
            self.unreported += 1;
            return false;
        }
        self.reported_at = Some(now);
        true
    }

    /// The events counted and not yet logged, once they may be.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self.unreported == 0 || self.quiet(now) {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    fn quiet(&self, now: Instant) -> bool {
        self.reported_at.is_some_and(|at| now < at + REPORT_EVERY)
    }
}

impl Server {
    /// Listen on `path`. Who may ask what is decided per request (see `access`): the
    /// socket is mode 0600 when only root and jobd's own user may use it, else 0666,
    /// and its folder is made passable (0711) when jobd makes it. A socket file nobody
    /// answers on is left from a jobd that died: it is replaced.
    pub fn bind(
        path: &Path,
        socket_group: Option<&str>,
        read_group: Option<&str>,
    ) -> Result<Server, ControlError> {
        let groups =
            Groups::resolve(socket_group, read_group).map_err(ControlError::UnknownGroup)?;
        let bind_error = |error| ControlError::Bind {
            path: path.to_path_buf(),
            error,
        };
        let (folder_mode, mode) = if groups.any() {
            (0o711, 0o666)
        } else {
            (0o700, 0o600)
        };
        if let Some(parent) = path.parent() {
            files::create_dirs(parent, folder_mode).map_err(bind_error)?;
        }
        if std::fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(bind_error)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            groups,
            clients: Vec::new(),
            next_id: 1,
            paused_until: None,
            evicted: Tally::default(),
            refused: Tally::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What to poll, and for what: the listener (unless it rests, or every client
    /// is busy being answered), then each client (reading or writing).
    pub fn fds(&self, now: Instant) -> Vec<(Option<u64>, BorrowedFd<'_>, PollFlags)> {
        let resting = self.paused_until.is_some_and(|until| now < until)
            || (self.clients.len() >= MAX_CLIENTS
                && self.clients.iter().all(|c| c.phase != Phase::Reading));
        let listen = if resting {
            PollFlags::empty()
        } else {
            PollFlags::POLLIN
        };
        let mut fds = vec![(None, self.listener.as_fd(), listen)];
        for client in &self.clients {
            let flags = match client.phase {
                Phase::Reading => PollFlags::POLLIN,
                Phase::Writing => PollFlags::POLLOUT,
                // Lines streamed to a waiting client, still to be sent.
                Phase::Working if client.written < client.output.len() => {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                }
                // Polled for hang-ups only: a client waiting for a run may go away.
                Phase::Working => PollFlags::POLLIN,
            };
            fds.push((Some(client.id), client.stream.as_fd(), flags));
        }
        fds
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Accept whoever is waiting to connect, and learn who each is.
    pub fn accept(&mut self, now: Instant) {
        loop {
            if self.clients.len() >= MAX_CLIENTS && !self.evict_idle() {
                // Everyone is being answered: the rest wait in the backlog.
                return;
            }
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: make room by dropping the
                    // idlest client, or stop accepting for a moment. Returning with the
                    // connection still queued would wake poll at once, for ever.
                    if self.evict_idle() {
                        continue;
                    }
                    if self.paused_until.is_none() {
                        warn!(
                            "control socket: cannot accept: {e}; pausing for {}ms",
                            ACCEPT_PAUSE.as_millis()
                        );
                    }
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            };
            self.paused_until = None;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let peer = Peer::of(&stream, &self.groups);
            self.clients.push(Client {
                id,
                stream,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                dropped: 0,
                phase: Phase::Reading,
                deadline: Some(now + CLIENT_TIMEOUT),
                peer,
            });
        }
    }

    /// Close the client that has waited longest without sending a whole request: a
    /// peer holding connections open must not keep jobctl out. False if none is.
    fn evict_idle(&mut self) -> bool {
        let idlest = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.phase == Phase::Reading)
            .min_by_key(|(_, c)| c.id)
            .map(|(index, _)| index);
        let Some(index) = idlest else {
            return false;
        };
        self.clients.swap_remove(index);
        self.evicted.unreported += 1;
        true
    }

    /// Log how many idle clients were closed to make room, and how many requests
    /// were refused, at most every 10 s: a flood of connections must not become a
    /// flood of log lines.
    pub fn report(&mut self, now: Instant) {
        if let Some(evicted) = self.evicted.due(now) {
            warn!(
                "control socket: closed {evicted} idle connection{} to make room for new ones",
                crate::leaf::words::plural(evicted)
            );
        }
        if let Some(refused) = self.refused.due(now) {
            info!(
                "control socket: refused {refused} more request{} for want of permission",
                crate::leaf::words::plural(refused)
            );
        }
    }

    /// A client's socket is ready: read its request or write its answer. Returns a
    /// complete request for the daemon.
    pub fn ready(&mut self, id: u64, now: Instant) -> Option<Incoming> {
        let index = self.clients.iter().position(|c| c.id == id)?;
        let client = &mut self.clients[index];
        match client.phase {
            Phase::Reading => {
                let mut buf = [0u8; 4096];
                loop {
                    match client.stream.read(&mut buf) {
                        Ok(0) => {
                            self.clients.swap_remove(index);
                            return None;
                        }
                        Ok(n) => {
                            client.input.extend_from_slice(&buf[..n]);
                            if let Some(end) = client.input.iter().position(|&b| b == b'\n') {
                                return self.parse(index, end, now);
                            }
                            if client.input.len() > MAX_REQUEST {
                                let message = format!("request longer than {MAX_REQUEST} bytes");
                                refuse(client, message, now);
                                return None;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            self.clients.swap_remove(index);
                            return None;
                        }
                    }
                }
            }
            Phase::Writing => loop {
                match client.stream.write(&client.output[client.written..]) {
                    Ok(n) => {
                        client.written += n;
                        if client.written == client.output.len() {
                            self.clients.swap_remove(index);
                            return None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.clients.swap_remove(index);
                        return None;
                    }
                }
            },
            Phase::Working => {
                // Lines streamed meanwhile go out as the client takes them.
                while client.written < client.output.len() {
                    match client.stream.write(&client.output[client.written..]) {
                        Ok(n) => client.written += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.clients.swap_remove(index);
                            return None;
                        }
                    }
                }
                if client.written == client.output.len() {
                    client.output.clear();
                    client.written = 0;
                }
                // Readable while waiting: the client hung up (or sent more, which is
                // not part of the protocol).
                let mut buf = [0u8; 64];
                if !matches!(client.stream.read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                {
                    self.clients.swap_remove(index);
                }
                None
            }
        }
    }

    fn parse(&mut self, index: usize, end: usize, now: Instant) -> Option<Incoming> {
        let client = &mut self.clients[index];
        if client.peer.level.is_none() {
            let refusal = client.peer.stranger(&self.groups);
            if self.refused.log_now(now) {
                info!("control socket: refused uid {}", client.peer.uid);
            }
            refuse(client, refusal.0, now);
            return None;
        }
        let line = &client.input[..end];
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(value)
                if value.get("version").and_then(|v| v.as_u64()) != Some(u64::from(VERSION)) =>
            {
                let message = format!(
                    "protocol version mismatch: this jobd speaks version {VERSION}, the client {}; use the jobctl that came with this jobd",
                    value
                        .get("version")
                        .map_or("none".to_string(), |v| v.to_string())
                );
                refuse(client, message, now);
                None
            }
            Ok(value) => match serde_json::from_value::<Request>(value) {
                Ok(request) => {
                    if let Err(refusal) = client.peer.may(&request.command, &self.groups) {
                        if self.refused.log_now(now) {
                            info!(
                                "control socket: refused uid {} the request `{}`",
                                client.peer.uid,
                                request.command.name()
                            );
                        }
                        refuse(client, refusal.0, now);
                        return None;
                    }
                    client.phase = Phase::Working;
                    client.deadline = None;
                    Some(Incoming {
                        client: client.id,
                        request,
                    })
                }
                Err(e) => {
                    let message = format!("bad request: {e}");
                    refuse(client, message, now);
                    None
                }
            },
            Err(e) => {
                let message = format!("bad request: not JSON: {e}");
                refuse(client, message, now);
                None
            }
        }
    }

    /// Answer a request; the client is closed once the answer is sent.
    pub fn respond(&mut self, id: u64, body: Body, now: Instant) {
        if let Some(client) = self.clients.iter_mut().find(|c| c.id == id) {
            queue(client, body, now);
        }
    }

    /// Send one more answer line to a client whose request goes on (`run --wait`,
    /// `logs --follow`): it stays open. A client that does not read falls behind by at
    /// most `MAX_STREAMED`; lines past that are dropped, and it is told how many.
    pub fn stream(&mut self, id: u64, body: Body) {
        let Some(client) = self.clients.iter_mut().find(|c| c.id == id) else {
            return;
        };
        if client.phase != Phase::Working {
            return;
        }
        if client.output.len() - client.written > MAX_STREAMED {
            client.dropped += 1;
            return;
        }
        if client.dropped > 0 {
            let note = Body::Dropped {
                lines: std::mem::take(&mut client.dropped),
            };
            append(client, note);
        }
        append(client, body);
    }

    /// Close clients past their deadline.
    pub fn expire(&mut self, now: Instant) {
        // A rest that is over must not stay a deadline in the past: poll would spin.
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        self.clients.retain(|c| c.deadline.is_none_or(|d| d > now));
    }

    /// Whether a client is still connected (a waiting `run --wait`).
    pub fn connected(&self, id: u64) -> bool {
        self.clients.iter().any(|c| c.id == id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answer with an error; the client is closed once it is sent.
fn refuse(client: &mut Client, message: String, now: Instant) {
    queue(client, Body::Error { message }, now);
}

/// Add a streamed line to what goes out to `client`.
fn append(client: &mut Client, body: Body) {
    if let Some(bytes) = encode(body) {
        client.output.extend_from_slice(&bytes);
        client.output.push(b'\n');
    }
}

/// Send `body` as this protocol version's response; the client is closed once sent.
/// An answer over `MAX_ANSWER` is cut short while it is being written, and an error
/// saying so is sent instead.
fn queue(client: &mut Client, body: Body, now: Instant) {
    let mut bytes = encode(body).unwrap_or_else(|| {
        let message = format!(
            "the answer would be larger than {} MiB, the most jobd sends; ask for less (one job, fewer runs)",
            MAX_ANSWER >> 20
        );
        encode(Body::Error { message }).expect("an error fits")
    });
    bytes.push(b'\n');
    if client.dropped > 0 {
        let note = Body::Dropped {
            lines: std::mem::take(&mut client.dropped),
        };
        append(client, note);
    }
    // After what was streamed before it, if anything is still unsent.
    client.output.drain(..client.written);
    client.output.extend_from_slice(&bytes);
    client.written = 0;
    client.phase = Phase::Writing;
    client.deadline = Some(now + CLIENT_TIMEOUT);
}

/// `body` as a response line (without its newline), or `None` if it would pass
/// `MAX_ANSWER`.
fn encode(body: Body) -> Option<Vec<u8>> {
    let response = Response {
        version: VERSION,
        body,
    };
    let mut out = Capped(Vec::new());
    serde_json::to_writer(&mut out, &response).ok()?;
    Some(out.0)
}

/// A buffer that refuses to grow past `MAX_ANSWER`.
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_ANSWER {
            return Err(io::Error::other("answer too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{RunInfo, Verdict};

    #[test]
    fn refusals_are_logged_at_most_every_ten_seconds_and_the_rest_counted() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert!(tally.log_now(start));
        for _ in 0..1000 {
            assert!(!tally.log_now(start + Duration::from_secs(1)));
        }
        assert_eq!(tally.due(start + Duration::from_secs(9)), None);
        assert_eq!(tally.due(start + REPORT_EVERY), Some(1000));
        assert_eq!(tally.due(start + 3 * REPORT_EVERY), None);
        assert!(tally.log_now(start + 3 * REPORT_EVERY));
    }

    #[test]
    fn an_answer_over_the_cap_becomes_an_error_saying_so() {
        let run = RunInfo {
            job: "big".into(),
            run_id: "1".into(),
            attempt: 1,
            scheduled_at: String::new(),
            started_at: String::new(),
            ended_at: String::new(),
            duration_ms: 0,
            outcome: Verdict::Failure,
            exit_code: Some(1),
            signal: None,
            message: String::new(),
            output: vec!["x".repeat(1 << 20)],
            host: None,
        };
        let small = encode(Body::History {
            runs: vec![run.clone(); 2],
        });
        assert!(small.is_some_and(|bytes| bytes.len() < 3 << 20));
        let runs = vec![run; 17];
        assert_eq!(encode(Body::History { runs }), None);
    }
}
