//! jobctl's side of the socket: one request, one answer.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Body, Command, MAX_ANSWER, Request, Response, VERSION};
use crate::leaf::visible;

#[derive(Debug)]
pub enum ClientError {
    /// Nobody listens on the socket: jobd is not running (exit 3).
    NotRunning {
        socket: PathBuf,
        reason: String,
    },
    PermissionDenied {
        socket: PathBuf,
    },
    /// jobd refused the request; the message says why.
    Refused(String),
    Io {
        socket: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotRunning { socket, reason } => {
                write!(
                    f,
                    "jobd is not running (control socket {}: {reason})",
                    socket.display()
                )
            }
            ClientError::PermissionDenied { socket } => write!(
                f,
                "permission denied on the control socket {}: run as root or jobd's user, or set socket_group or \
                 read_group in the jobfile (members must be able to pass through the socket's folder)",
                socket.display()
            ),
            // Shown on a terminal: it may quote what others chose.
            ClientError::Refused(message) => f.write_str(&visible::escape_lines(message)),
            ClientError::Io { socket, error } => {
                write!(f, "talking to jobd on {} failed: {error}", socket.display())
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Send `command` to the jobd listening on `socket` and wait for its answer (at most
/// `timeout`, or as long as it takes).
pub fn call(
    socket: &Path,
    command: Command,
    timeout: Option<Duration>,
) -> Result<Body, ClientError> {
    call_streaming(socket, command, timeout, |_| {})
}

/// `call`, handing each line streamed before the answer (a `run --wait`'s output) to
/// `streamed`.
pub fn call_streaming(
    socket: &Path,
    command: Command,
    timeout: Option<Duration>,
    mut streamed: impl FnMut(Body),
) -> Result<Body, ClientError> {
    let mut connection = Connection::open(socket, command, timeout)?;
    loop {
        match connection.receive()? {
            None => {
                return Err(ClientError::Refused(
                    "jobd closed the connection without answering".to_string(),
                ));
            }
            Some(body @ (Body::Line(_) | Body::Dropped { .. })) => streamed(body),
            Some(Body::Error { message }) => return Err(ClientError::Refused(message)),
            Some(body) => return Ok(body),
        }
    }
}

/// One request and what jobd sends back, answer after answer (a `logs --follow`).
pub struct Connection {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Connection {
    pub fn open(
        socket: &Path,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Connection, ClientError> {
        let io_error = |error: io::Error| ClientError::Io {
            socket: socket.to_path_buf(),
            error,
        };
        let stream = UnixStream::connect(socket).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                socket: socket.to_path_buf(),
                reason: if error.kind() == io::ErrorKind::NotFound {
                    "no such file".to_string()
                } else {
                    "connection refused".to_string()
                },
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                socket: socket.to_path_buf(),
            },
            _ => io_error(error),
        })?;
        stream.set_read_timeout(timeout).map_err(io_error)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(io_error)?;
        let mut line = serde_json::to_vec(&Request {
            version: VERSION,
            command,
        })
        .expect("a request serializes");
        line.push(b'\n');
        (&stream).write_all(&line).map_err(io_error)?;
        Ok(Connection {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
        })
    }

    /// The next answer; None when jobd closed the connection.
    pub fn receive(&mut self) -> Result<Option<Body>, ClientError> {
        let mut answer = Vec::new();
        io::Read::take(&mut self.reader, MAX_ANSWER as u64 + 1)
            .read_until(b'\n', &mut answer)
            .map_err(|error| ClientError::Io {
                socket: self.socket.clone(),
                error,
            })?;
        if answer.is_empty() {
            return Ok(None);
        }
        if answer.len() > MAX_ANSWER && answer.last() != Some(&b'\n') {
            return Err(ClientError::Refused(format!(
                "jobd's answer is larger than {} MiB, more than jobd sends; is this jobctl from the same version as jobd?",
                MAX_ANSWER >> 20
            )));
        }
        let response: Response = serde_json::from_slice(&answer).map_err(|e| {
            ClientError::Refused(format!(
                "cannot read jobd's answer ({e}); is this jobctl from the same version as jobd?"
            ))
        })?;
        Ok(Some(response.body))
    }
}
