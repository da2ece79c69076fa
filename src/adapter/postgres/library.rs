//! libpq, loaded at run time with `dlopen`, so that building and testing jobd needs no
//! PostgreSQL development files and a jobd without `cluster:` needs no libpq at all.
//! Only cluster mode loads it; its absence is then an error that names the package.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::fmt;
use std::sync::OnceLock;

use nix::libc;

/// The soname of libpq's stable ABI (every PostgreSQL release since 8.0 ships it).
pub const LIBPQ_SONAME: &str = "libpq.so.5";

/// libpq's opaque handles.
pub(super) type PgConn = c_void;
pub(super) type PgResult = c_void;

/// `PGnotify`, as libpq-fe.h declares it.
#[repr(C)]
pub(super) struct PgNotify {
    pub relname: *mut c_char,
    pub be_pid: c_int,
    pub extra: *mut c_char,
    next: *mut PgNotify,
}

pub(super) type NoticeProcessor = Option<unsafe extern "C" fn(*mut c_void, *const c_char)>;

/// Declares the table of libpq functions jobd calls and the code that resolves them
/// all at load time, so a library missing one fails at once, by name.
macro_rules! functions {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        #[allow(non_snake_case)]
        pub(super) struct Functions {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Functions {
            /// # Safety
            /// `handle` is a live handle from `dlopen` of a libpq.
            unsafe fn resolve(handle: *mut c_void) -> Result<Functions, &'static str> {
                Ok(Functions {
                    $($name: {
                        let name = concat!(stringify!($name), "\0");
                        // SAFETY: `handle` is live (the caller's contract) and `name` is
                        // NUL-terminated.
                        let symbol = unsafe { libc::dlsym(handle, name.as_ptr().cast()) };
                        if symbol.is_null() {
                            return Err(stringify!($name));
                        }
                        // SAFETY: the symbol is libpq's function of that name, whose C
                        // signature (libpq-fe.h, stable since libpq 5) is the one declared
                        // here; a data pointer and a function pointer have one size on
                        // every platform jobd supports.
                        unsafe {
                            std::mem::transmute::<
                                *mut c_void,
                                unsafe extern "C" fn($($arg),*) $(-> $ret)?,
                            >(symbol)
                        }
                    },)*
                })
            }
        }
    };
}

functions! {
    PQconnectStartParams: fn(*const *const c_char, *const *const c_char, c_int) -> *mut PgConn;
    PQconnectPoll: fn(*mut PgConn) -> c_int;
    PQresetStart: fn(*mut PgConn) -> c_int;
    PQresetPoll: fn(*mut PgConn) -> c_int;
    PQstatus: fn(*const PgConn) -> c_int;
    PQsocket: fn(*const PgConn) -> c_int;
    PQerrorMessage: fn(*const PgConn) -> *const c_char;
    PQhost: fn(*const PgConn) -> *const c_char;
    PQport: fn(*const PgConn) -> *const c_char;
    PQdb: fn(*const PgConn) -> *const c_char;
    PQuser: fn(*const PgConn) -> *const c_char;
    PQfinish: fn(*mut PgConn);
    PQsetnonblocking: fn(*mut PgConn, c_int) -> c_int;
    PQsetNoticeProcessor: fn(*mut PgConn, NoticeProcessor, *mut c_void) -> NoticeProcessor;
    PQsendQuery: fn(*mut PgConn, *const c_char) -> c_int;
    PQsendQueryParams: fn(
        *mut PgConn,
        *const c_char,
        c_int,
        *const c_uint,
        *const *const c_char,
        *const c_int,
        *const c_int,
        c_int
    ) -> c_int;
    PQflush: fn(*mut PgConn) -> c_int;
    PQconsumeInput: fn(*mut PgConn) -> c_int;
    PQisBusy: fn(*mut PgConn) -> c_int;
    PQgetResult: fn(*mut PgConn) -> *mut PgResult;
    PQnotifies: fn(*mut PgConn) -> *mut PgNotify;
    PQfreemem: fn(*mut c_void);
    PQresultStatus: fn(*const PgResult) -> c_int;
    PQresultErrorMessage: fn(*const PgResult) -> *const c_char;
    PQresultErrorField: fn(*const PgResult, c_int) -> *const c_char;
    PQntuples: fn(*const PgResult) -> c_int;
    PQnfields: fn(*const PgResult) -> c_int;
    PQfname: fn(*const PgResult, c_int) -> *const c_char;
    PQgetvalue: fn(*const PgResult, c_int, c_int) -> *const c_char;
    PQgetisnull: fn(*const PgResult, c_int, c_int) -> c_int;
    PQgetlength: fn(*const PgResult, c_int, c_int) -> c_int;
    PQclear: fn(*mut PgResult);
}

/// A loaded libpq. Never unloaded: libpq and the TLS library it pulls in keep global
/// state that does not survive `dlclose`, and one copy per process is all jobd needs.
pub struct Libpq {
    pub(super) f: Functions,
}

// SAFETY: `Libpq` only holds function pointers into a library that stays loaded for the
// life of the process; libpq's functions may be called from any thread (Debian builds it
// thread-safe), each connection being used by one thread at a time (`Connection` is not
// `Sync`).
unsafe impl Send for Libpq {}
// SAFETY: as above: the table is immutable after loading.
unsafe impl Sync for Libpq {}

/// libpq could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub library: String,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster mode needs libpq, the PostgreSQL client library ({}): {}; install the \
             Debian package libpq5 (apt-get install libpq5)",
            self.library, self.reason
        )
    }
}

impl std::error::Error for LoadError {}

impl Libpq {
    /// The system's libpq (`libpq.so.5`), loaded on first use.
    pub fn system() -> Result<&'static Libpq, LoadError> {
        static SYSTEM: OnceLock<Result<&'static Libpq, LoadError>> = OnceLock::new();
        SYSTEM.get_or_init(|| Libpq::open(LIBPQ_SONAME)).clone()
    }

    /// The libpq found under `library` (a soname the dynamic loader looks up, or a
    /// path). Each successful call loads a table that lives until the process ends:
    /// call it once (the tests point it at a missing library).
    pub fn open(library: &str) -> Result<&'static Libpq, LoadError> {
        let error = |reason: String| LoadError {
            library: library.to_string(),
            reason,
        };
        let name = CString::new(library).map_err(|_| error("a NUL byte in its name".into()))?;
        // SAFETY: `name` is NUL-terminated. Loading runs libpq's (and its dependencies')
        // initialisers, which only set up their own global state.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(error(last_dl_error()));
        }
        // SAFETY: `handle` was just returned by dlopen and is never closed.
        match unsafe { Functions::resolve(handle) } {
            Ok(f) => Ok(Box::leak(Box::new(Libpq { f }))),
            Err(missing) => Err(error(format!(
                "it has no function {missing} (libpq 12 or later is needed)"
            ))),
        }
    }
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by the loader, valid
    // until the next dl* call on this thread; it is copied at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "the dynamic loader gave no reason".to_string()
    } else {
        // SAFETY: non-NULL, NUL-terminated (see above).
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}
