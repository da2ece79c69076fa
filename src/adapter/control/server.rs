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
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Uid};

use super::protocol::{Body, MAX_REQUEST, Request, Response, VERSION};
use crate::leaf::account;

/// Connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 64;
/// How long the listener rests after running out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const EVICTION_REPORT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request, and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ControlError {
    /// Another jobd answers on the socket.
    InUse(PathBuf),
    UnknownGroup(String),
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
            ControlError::UnknownGroup(group) => {
                write!(
                    f,
                    "socket_group: there is no group `{group}` on this system"
                )
            }
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
    phase: Phase,
    /// Reading or writing must be done by then; a waiting client has none.
    deadline: Option<Instant>,
    /// Why this peer may not control jobd: its request is read (closing a socket
    /// with unread data would reset the connection before the answer is read), then
    /// answered with this.
    refused: Option<String>,
}

/// A request from a client, for the daemon to answer with `respond`.
pub struct Incoming {
    pub client: u64,
    pub request: Request,
}

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    group: Option<Gid>,
    clients: Vec<Client>,
    next_id: u64,
    /// Accepting failed (no file descriptor left): the listener rests until then.
    paused_until: Option<Instant>,
    /// Idle clients closed to make room, not yet logged, and when that was last done.
    evicted: u64,
    reported_at: Option<Instant>,
}

impl Server {
    /// Listen on `path` (mode 0600, or 0660 for `group`). A socket file nobody answers
    /// on is left from a jobd that died: it is replaced.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<Server, ControlError> {
        let gid = match group {
            Some(name) => Some(
                account::gid(name).ok_or_else(|| ControlError::UnknownGroup(name.to_string()))?,
            ),
            None => None,
        };
        let bind_error = |error| ControlError::Bind {
            path: path.to_path_buf(),
            error,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(bind_error)?;
        }
        if std::fs::symlink_metadata(path).is_ok() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(bind_error)?;
        if let Some(gid) = gid {
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| bind_error(e.into()))?;
        }
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            group: gid,
            clients: Vec::new(),
            next_id: 1,
            paused_until: None,
            evicted: 0,
            reported_at: None,
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

    /// Accept whoever is waiting to connect; refuse peers who may not control jobd.
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
            let refused = self.permitted(&stream).err().map(|who| {
                info!("control socket: refused {who}");
                format!("permission denied: {who} may not control this jobd")
            });
            self.clients.push(Client {
                id,
                stream,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                phase: Phase::Reading,
                deadline: Some(now + CLIENT_TIMEOUT),
                refused,
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
        self.evicted += 1;
        true
    }

    /// Log how many idle clients were closed to make room, at most every 10 s: a
    /// flood of connections must not become a flood of log lines.
    pub fn report_evicted(&mut self, now: Instant) {
        if self.evicted == 0
            || self
                .reported_at
                .is_some_and(|at| now < at + EVICTION_REPORT)
        {
            return;
        }
        warn!(
            "control socket: closed {} idle connection{} to make room for new ones",
            self.evicted,
            crate::leaf::words::plural(self.evicted)
        );
        self.evicted = 0;
        self.reported_at = Some(now);
    }

    /// Root, jobd's own user, and members of `socket_group`.
    fn permitted(&self, stream: &UnixStream) -> Result<(), String> {
        let Ok(creds) = getsockopt(stream, PeerCredentials) else {
            return Err("a peer whose credentials cannot be read".to_string());
        };
        let uid = Uid::from_raw(creds.uid());
        let gid = Gid::from_raw(creds.gid());
        if uid.is_root() || uid == Uid::effective() || self.group.is_some_and(|g| g == gid) {
            return Ok(());
        }
        if let Some(group) = self.group {
            let member = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .and_then(|user| {
                    let name = std::ffi::CString::new(user.name).ok()?;
                    nix::unistd::getgrouplist(&name, user.gid).ok()
                })
                .is_some_and(|groups| groups.contains(&group));
            if member {
                return Ok(());
            }
        }
        Err(format!("uid {uid}"))
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
        if let Some(message) = client.refused.take() {
            refuse(client, message, now);
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

/// Send `body` as this protocol version's response; the client is closed once sent.
fn queue(client: &mut Client, body: Body, now: Instant) {
    let response = Response {
        version: VERSION,
        body,
    };
    let mut bytes = serde_json::to_vec(&response).expect("a response serializes");
    bytes.push(b'\n');
    client.output = bytes;
    client.written = 0;
    client.phase = Phase::Writing;
    client.deadline = Some(now + CLIENT_TIMEOUT);
}
