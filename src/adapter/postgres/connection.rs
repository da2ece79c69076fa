//! One libpq connection (`PGconn`) behind a safe interface: every libpq call jobd
//! makes goes through here. It only ever uses libpq's non-blocking calls; waiting is the
//! caller's business (the daemon's poll loop, or `blocking`).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

use log::debug;

use super::library::{Libpq, PgConn, PgResult};
use super::rows::{QueryError, Rows};

/// What `PQconnectPoll`/`PQresetPoll` asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polling {
    /// Call again once the socket is readable.
    Reading,
    /// Call again once the socket is writable.
    Writing,
    Ok,
    Failed,
}

impl Polling {
    fn from_c(status: c_int) -> Polling {
        // PostgresPollingStatusType: FAILED 0, READING 1, WRITING 2, OK 3 (4, ACTIVE, is
        // unused by libpq and means "call again").
        match status {
            1 => Polling::Reading,
            2 | 4 => Polling::Writing,
            3 => Polling::Ok,
            _ => Polling::Failed,
        }
    }
}

/// What `PQflush` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything is sent.
    Done,
    /// Call again once the socket is writable (and read meanwhile).
    Pending,
    Failed,
}

/// A notification received on a channel this connection LISTENs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
    /// The server process that sent it.
    pub sender_pid: i32,
}

/// A libpq connection, from `PQconnectStartParams` to `PQfinish` (on drop).
pub struct Connection {
    lib: &'static Libpq,
    conn: NonNull<PgConn>,
}

// SAFETY: a PGconn may move between threads as long as one thread at a time uses it
// (libpq's documented rule); `Connection` is not `Sync` and every call takes `&mut self`
// or `&self` on one owner.
unsafe impl Send for Connection {}

const CONNECTION_BAD: c_int = 1;
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PGRES_EMPTY_QUERY: c_int = 0;

impl Connection {
    /// Start connecting with libpq's parameters: `options` first (jobd's defaults), then
    /// `conninfo` as an expanded `dbname`, so that whatever the user wrote (a URI or
    /// `key=value` words, with .pgpass, PGSERVICE and the PG* variables as libpq reads
    /// them) overrides jobd's defaults. Returns at once, except for the host name
    /// lookup, which libpq does synchronously here.
    pub fn start(
        lib: &'static Libpq,
        options: &[(&str, &str)],
        conninfo: &str,
    ) -> Result<Connection, String> {
        let words = |text: &str| CString::new(text).map_err(|_| "a NUL byte in it".to_string());
        let mut keys = Vec::with_capacity(options.len() + 1);
        let mut values = Vec::with_capacity(options.len() + 1);
        for (key, value) in options {
            keys.push(words(key)?);
            values.push(words(value)?);
        }
        keys.push(words("dbname")?);
        values.push(words(conninfo)?);
        let mut key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let mut value_ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
        key_ptrs.push(ptr::null());
        value_ptrs.push(ptr::null());
        // SAFETY: both arrays are NULL-terminated arrays of NUL-terminated strings that
        // outlive the call (libpq copies what it keeps).
        let conn =
            unsafe { (lib.f.PQconnectStartParams)(key_ptrs.as_ptr(), value_ptrs.as_ptr(), 1) };
        let conn = NonNull::new(conn).ok_or("libpq could not allocate a connection")?;
        let connection = Connection { lib, conn };
        // SAFETY: the connection is live; `log_notice` is a plain function that never
        // unwinds and ignores its argument.
        unsafe {
            (lib.f.PQsetNoticeProcessor)(conn.as_ptr(), Some(log_notice), ptr::null_mut());
        }
        if connection.is_bad() {
            return Err(connection.error_message());
        }
        Ok(connection)
    }

    /// One step of connecting (`PQconnectPoll`).
    pub fn poll_connect(&mut self) -> Polling {
        // SAFETY: the connection is live.
        Polling::from_c(unsafe { (self.lib.f.PQconnectPoll)(self.conn.as_ptr()) })
    }

    /// Close the socket and start connecting again with the same parameters
    /// (`PQresetStart`); false when that could not even begin.
    pub fn reset_start(&mut self) -> bool {
        // SAFETY: the connection is live.
        unsafe { (self.lib.f.PQresetStart)(self.conn.as_ptr()) == 1 }
    }

    /// One step of reconnecting (`PQresetPoll`).
    pub fn poll_reset(&mut self) -> Polling {
        // SAFETY: the connection is live.
        Polling::from_c(unsafe { (self.lib.f.PQresetPoll)(self.conn.as_ptr()) })
    }

    /// Whether the connection has failed (`PQstatus` is CONNECTION_BAD).
    pub fn is_bad(&self) -> bool {
        // SAFETY: the connection is live.
        unsafe { (self.lib.f.PQstatus)(self.conn.as_ptr()) == CONNECTION_BAD }
    }

    /// The socket to poll; it may change while connecting, so ask again after each
    /// step.
    pub fn socket(&self) -> Option<RawFd> {
        // SAFETY: the connection is live.
        let fd = unsafe { (self.lib.f.PQsocket)(self.conn.as_ptr()) };
        (fd >= 0).then_some(fd)
    }

    /// Make sending never block (`PQsetnonblocking`): a query that does not fit in the
    /// socket buffer is finished by `flush`.
    pub fn set_nonblocking(&mut self) -> Result<(), String> {
        // SAFETY: the connection is live.
        match unsafe { (self.lib.f.PQsetnonblocking)(self.conn.as_ptr(), 1) } {
            0 => Ok(()),
            _ => Err(self.error_message()),
        }
    }

    /// libpq's latest error message, trimmed.
    pub fn error_message(&self) -> String {
        // SAFETY: the connection is live; the message is owned by it and copied at once.
        unsafe { text((self.lib.f.PQerrorMessage)(self.conn.as_ptr())) }
            .map(|m| m.trim_end().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no reason given by libpq".to_string())
    }

    /// Where this connection goes, for messages: host, port, database and user, never
    /// the password.
    pub fn target(&self) -> String {
        let conn = self.conn.as_ptr();
        let f = &self.lib.f;
        // SAFETY: the connection is live; each string is owned by it and copied at once.
        let (host, port, db, user) = unsafe {
            (
                text((f.PQhost)(conn)),
                text((f.PQport)(conn)),
                text((f.PQdb)(conn)),
                text((f.PQuser)(conn)),
            )
        };
        let host = host.unwrap_or_default();
        let place = if host.starts_with('/') {
            format!("socket {host}/.s.PGSQL.{}", port.unwrap_or_default())
        } else {
            format!("{host}:{}", port.unwrap_or_default())
        };
        format!(
            "{place}, database {} as user {}",
            db.unwrap_or_default(),
            user.unwrap_or_default()
        )
    }

    /// Send `sql` with text parameters in one extended-protocol round trip through the
    /// unnamed statement (`PQsendQueryParams`): nothing outlives the query, which keeps
    /// PgBouncer's transaction pooling safe. Results come back as text.
    pub fn send_query(&mut self, sql: &str, params: &[Option<String>]) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "a NUL byte in the SQL".to_string())?;
        let values: Vec<Option<CString>> = params
            .iter()
            .map(|p| p.as_deref().map(CString::new).transpose())
            .collect::<Result<_, _>>()
            .map_err(|_| "a NUL byte in a parameter".to_string())?;
        let pointers: Vec<*const c_char> = values
            .iter()
            .map(|v| v.as_ref().map_or(ptr::null(), |v| v.as_ptr()))
            .collect();
        let count = c_int::try_from(pointers.len()).map_err(|_| "too many parameters")?;
        // SAFETY: the connection is live; `sql` and every non-NULL value are
        // NUL-terminated and outlive the call (libpq copies them into its buffer); NULL
        // types, lengths and formats mean "infer the types, text values".
        let sent = unsafe {
            (self.lib.f.PQsendQueryParams)(
                self.conn.as_ptr(),
                sql.as_ptr(),
                count,
                ptr::null(),
                pointers.as_ptr(),
                ptr::null(),
                ptr::null(),
                0,
            )
        };
        if sent == 1 {
            Ok(())
        } else {
            Err(self.error_message())
        }
    }

    /// Send a script of several statements without parameters (`PQsendQuery`, the
    /// simple protocol): the schema's migration steps.
    pub fn send_script(&mut self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "a NUL byte in the SQL".to_string())?;
        // SAFETY: the connection is live and `sql` is NUL-terminated.
        if unsafe { (self.lib.f.PQsendQuery)(self.conn.as_ptr(), sql.as_ptr()) } == 1 {
            Ok(())
        } else {
            Err(self.error_message())
        }
    }

    /// Send what is still buffered (`PQflush`).
    pub fn flush(&mut self) -> Flush {
        // SAFETY: the connection is live.
        match unsafe { (self.lib.f.PQflush)(self.conn.as_ptr()) } {
            0 => Flush::Done,
            1 => Flush::Pending,
            _ => Flush::Failed,
        }
    }

    /// Read what the socket holds (`PQconsumeInput`); false when the connection broke.
    pub fn consume_input(&mut self) -> bool {
        // SAFETY: the connection is live.
        unsafe { (self.lib.f.PQconsumeInput)(self.conn.as_ptr()) == 1 }
    }

    /// Whether `next_result` would have to wait for more input (`PQisBusy`).
    pub fn is_busy(&mut self) -> bool {
        // SAFETY: the connection is live.
        unsafe { (self.lib.f.PQisBusy)(self.conn.as_ptr()) == 1 }
    }

    /// The next result of the query (`PQgetResult`), None once all have come. Only
    /// call it when `is_busy` is false, or it blocks.
    pub fn next_result(&mut self) -> Option<Result<Rows, QueryError>> {
        // SAFETY: the connection is live.
        let result = unsafe { (self.lib.f.PQgetResult)(self.conn.as_ptr()) };
        let result = NonNull::new(result)?;
        let outcome = self.read_result(result);
        // SAFETY: `result` came from PQgetResult, was read above, and is freed once.
        unsafe { (self.lib.f.PQclear)(result.as_ptr()) };
        Some(outcome)
    }

    fn read_result(&self, result: NonNull<PgResult>) -> Result<Rows, QueryError> {
        let f = &self.lib.f;
        let r = result.as_ptr();
        // SAFETY: `r` is a live PGresult; every string read is owned by it and copied
        // before it is cleared, and indices stay below PQntuples/PQnfields.
        unsafe {
            let status = (f.PQresultStatus)(r);
            if !matches!(
                status,
                PGRES_COMMAND_OK | PGRES_TUPLES_OK | PGRES_EMPTY_QUERY
            ) {
                let field = |code: u8| text((f.PQresultErrorField)(r, c_int::from(code)));
                return Err(QueryError {
                    sqlstate: field(b'C').unwrap_or_default(),
                    message: field(b'M')
                        .or_else(|| text((f.PQresultErrorMessage)(r)))
                        .unwrap_or_else(|| format!("result status {status}")),
                    detail: field(b'D'),
                    hint: field(b'H'),
                });
            }
            let columns = (0..(f.PQnfields)(r))
                .map(|c| text((f.PQfname)(r, c)).unwrap_or_default())
                .collect();
            let rows = (0..(f.PQntuples)(r))
                .map(|row| {
                    (0..(f.PQnfields)(r))
                        .map(|c| {
                            if (f.PQgetisnull)(r, row, c) == 1 {
                                return None;
                            }
                            let value = (f.PQgetvalue)(r, row, c);
                            let length = usize::try_from((f.PQgetlength)(r, row, c)).unwrap_or(0);
                            let bytes = std::slice::from_raw_parts(value.cast::<u8>(), length);
                            Some(String::from_utf8_lossy(bytes).into_owned())
                        })
                        .collect()
                })
                .collect();
            Ok(Rows::new(columns, rows))
        }
    }

    /// The next notification already read (`PQnotifies`); call `consume_input` first.
    pub fn next_notification(&mut self) -> Option<Notification> {
        // SAFETY: the connection is live.
        let notify = unsafe { (self.lib.f.PQnotifies)(self.conn.as_ptr()) };
        if notify.is_null() {
            return None;
        }
        // SAFETY: a non-NULL PGnotify from PQnotifies, whose strings live in the same
        // allocation; copied, then freed once with PQfreemem as libpq requires.
        unsafe {
            let notification = Notification {
                channel: text((*notify).relname).unwrap_or_default(),
                payload: text((*notify).extra).unwrap_or_default(),
                sender_pid: (*notify).be_pid,
            };
            (self.lib.f.PQfreemem)(notify.cast());
            Some(notification)
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the connection is live and never used again.
        unsafe { (self.lib.f.PQfinish)(self.conn.as_ptr()) }
    }
}

/// A C string owned by libpq, copied; None for NULL.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string valid for the duration of the call.
unsafe fn text(s: *const c_char) -> Option<String> {
    if s.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        Some(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    }
}

/// The server's NOTICEs (e.g. "schema already exists, skipping") go to jobd's log at
/// debug level, instead of libpq's default: straight to stderr.
unsafe extern "C" fn log_notice(_arg: *mut c_void, message: *const c_char) {
    // SAFETY: libpq passes a NUL-terminated message valid during the call.
    if let Some(message) = unsafe { text(message) } {
        debug!("postgres: {}", message.trim_end());
    }
}
