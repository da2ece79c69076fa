//! Looking at one entry of a spool folder before anything else touches it: what it
//! is, who owns it, what it says and whether its task accepts that. Never blocks,
//! never follows a link, never reads more than a spool file may hold.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use nix::unistd::{Gid, Uid};

use super::SpoolError;
use super::layout::RESULT_SUFFIX;
use super::request::{self, Request};
use crate::leaf::account;
use crate::model::config::Config;

/// A spool file larger than this is refused unread.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// What an entry turned out to be.
#[derive(Debug)]
pub(super) enum Look {
    /// A request jobd may run.
    Valid(Inspected),
    /// Gone before jobd could look at it (taken back by its writer).
    Vanished,
    /// Not a regular file: refused where it lies, never moved into jobd's folders.
    InPlace(String),
    /// A regular file jobd will not run: it goes to `failed/` with the reason.
    Refused { reason: String, inode: u64 },
}

/// A valid request, with what was read and the identity of the file it was read from.
#[derive(Debug)]
pub(super) struct Inspected {
    pub request: Request,
    pub bytes: Vec<u8>,
    pub inode: u64,
    /// When it arrived: renaming it into `new/` set its change time.
    pub arrived: DateTime<Utc>,
}

/// Who may drop files: jobd's own user and root always, the configured users, and
/// files whose group is a configured one or the submitters' group.
#[derive(Debug, Clone, Default)]
pub(super) struct Allowed {
    uids: Vec<Uid>,
    gids: Vec<Gid>,
}

impl Allowed {
    pub fn resolve(config: &Config) -> Result<Allowed, SpoolError> {
        let mut allowed = Allowed {
            uids: vec![Uid::effective(), Uid::from_raw(0)],
            gids: Vec::new(),
        };
        for name in &config.spool.allow_users {
            let uid = account::uid(name).ok_or_else(|| SpoolError::UnknownUser(name.clone()))?;
            allowed.uids.push(uid);
        }
        for name in config.spool.allow_groups.iter().chain(&config.spool.group) {
            let gid = account::gid(name).ok_or_else(|| SpoolError::UnknownGroup(name.clone()))?;
            allowed.gids.push(gid);
        }
        Ok(allowed)
    }

    fn permits(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&Uid::from_raw(uid)) || self.gids.contains(&Gid::from_raw(gid))
    }
}

/// The kind of a file that is not a regular one, in words.
fn kind(meta: &fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_symlink() {
        Some("a symbolic link")
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
}

fn not_a_file(what: &str) -> Look {
    Look::InPlace(format!(
        "it is {what}, not a regular file; it is left where it lies"
    ))
}

/// Look at `dir/name`: the checks every file passes before jobd runs it, again when
/// it is claimed, and again when jobd reads its own copy back.
pub(super) fn inspect(dir: &Path, name: &str, allowed: &Allowed, config: &Config) -> Look {
    let path = dir.join(name);
    // What the name is, before anything is opened: opening a FIFO or a device could
    // block or do something.
    let before = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Vanished,
        Err(e) => return Look::InPlace(format!("cannot look at it: {e}")),
    };
    if let Some(what) = kind(&before) {
        return not_a_file(what);
    }
    let refused = |reason: String| Look::Refused {
        reason,
        inode: before.ino(),
    };
    if name.ends_with(RESULT_SUFFIX) {
        return refused(format!(
            "names ending in {RESULT_SUFFIX} are kept for results"
        ));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return not_a_file("a symbolic link");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Vanished,
        // Swapped for a folder between the look and the open.
        Err(e) if e.raw_os_error() == Some(nix::libc::EISDIR) => return not_a_file("a directory"),
        Err(e) => return refused(format!("cannot open it: {e}")),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return refused(format!("cannot read it: {e}")),
    };
    if let Some(what) = kind(&meta) {
        return not_a_file(what);
    }
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        // Replaced between the look and the open: what is there now is looked at when
        // its own event comes.
        return Look::Vanished;
    }
    let refused = |reason: String| Look::Refused {
        reason,
        inode: meta.ino(),
    };
    if !allowed.permits(meta.uid(), meta.gid()) {
        return refused(format!(
            "it is owned by uid {} (gid {}), who may not submit jobs (see spool.allow_users, \
             spool.allow_groups and spool.group)",
            meta.uid(),
            meta.gid()
        ));
    }
    if meta.nlink() > 1 {
        return refused(format!(
            "it has {} hard links; submit a file of its own",
            meta.nlink()
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return refused(format!(
            "it is {} bytes, more than the {MAX_FILE_BYTES} a spool file may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return refused(format!("cannot read it: {e}"));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return refused("it grew past the size limit while being read".to_string());
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            return refused(format!("it is not UTF-8 text (byte {})", e.valid_up_to()));
        }
    };
    let request = match request::parse(text) {
        Ok(request) => request,
        Err(reason) => return refused(reason),
    };
    let Some(task) = config.task(&request.task) else {
        let known: Vec<&str> = config.tasks.iter().map(|t| t.name.as_str()).collect();
        return refused(format!(
            "unknown task `{}` (the jobfile's tasks: {})",
            request.task,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    if let Err(refusal) = request.check(task) {
        return refused(refusal.to_string());
    }
    // Microseconds: what JOBD_SCHEDULED_AT and the result carry.
    let arrived =
        DateTime::<Utc>::from_timestamp(meta.ctime(), (meta.ctime_nsec() as u32 / 1000) * 1000)
            .unwrap_or_else(Utc::now);
    Look::Valid(Inspected {
        request,
        bytes,
        inode: meta.ino(),
        arrived,
    })
}
