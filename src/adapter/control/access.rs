//! Who may ask jobd what. Root and jobd's own user may do everything; members of
//! `socket_group` may also run jobs and reload; members of `read_group` may only read.
//!
//! Decided for each request from the peer's credentials as the kernel recorded them
//! at connect(): its uid (SO_PEERCRED) and every group it was in (SO_PEERGROUPS), so
//! supplementary groups count and a group joined later does not. The socket file's
//! mode decides nothing, and no user database is asked (a lookup may wait on the
//! network, and the loop must not).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use nix::libc;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Uid};

use super::protocol::Command;
use crate::leaf::account;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `status`, `history`, `next`.
    Read,
    /// Also `run` and `reload`.
    Control,
}

impl Level {
    pub fn of(command: &Command) -> Level {
        match command {
            Command::Status
            | Command::History { .. }
            | Command::Next { .. }
            | Command::Logs { .. } => Level::Read,
            Command::Run { .. } | Command::Reload { .. } => Level::Control,
        }
    }
}

/// A group named in the jobfile, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: Gid,
}

/// A group of `socket_group` or `read_group` that this system does not have.
#[derive(Debug)]
pub struct UnknownGroup {
    pub key: &'static str,
    pub name: String,
}

impl fmt::Display for UnknownGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: there is no group `{}` on this system (create it with groupadd, or fix the name in the jobfile)",
            self.key, self.name
        )
    }
}

/// The groups that open the socket to others than root and jobd's own user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    pub control: Option<Group>,
    pub read: Option<Group>,
}

impl Groups {
    /// The jobfile's `socket_group` and `read_group`, looked up once, at start-up.
    pub fn resolve(
        socket_group: Option<&str>,
        read_group: Option<&str>,
    ) -> Result<Groups, UnknownGroup> {
        let lookup = |key, name: Option<&str>| match name {
            None => Ok(None),
            Some(name) => account::gid(name)
                .map(|gid| {
                    Some(Group {
                        name: name.to_string(),
                        gid,
                    })
                })
                .ok_or_else(|| UnknownGroup {
                    key,
                    name: name.to_string(),
                }),
        };
        Ok(Groups {
            control: lookup("socket_group", socket_group)?,
            read: lookup("read_group", read_group)?,
        })
    }

    /// Whether anyone besides root and jobd's own user may use the socket.
    pub fn any(&self) -> bool {
        self.control.is_some() || self.read.is_some()
    }

    /// Who, besides root and jobd's own user, may make a request of `level`.
    fn who(&self, level: Level) -> String {
        let own = format!("jobd's own user (uid {})", Uid::effective());
        let control = self
            .control
            .as_ref()
            .map(|g| format!("members of socket_group `{}`", g.name));
        let read = self
            .read
            .as_ref()
            .filter(|_| level == Level::Read)
            .map(|g| format!("members of read_group `{}`", g.name));
        let mut who: Vec<String> = [Some("root".to_string()), Some(own), control, read]
            .into_iter()
            .flatten()
            .collect();
        let last = who.pop().expect("root and jobd's own user");
        format!("{} and {last}", who.join(", "))
    }
}

/// A connected client, as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// What it may do; `None`: nothing.
    pub level: Option<Level>,
}

impl Peer {
    /// Who is at the other end of `stream`, and what `groups` let it do. A peer whose
    /// credentials cannot be read may do nothing.
    pub fn of(stream: &UnixStream, groups: &Groups) -> Peer {
        let Ok(creds) = getsockopt(stream, PeerCredentials) else {
            return Peer {
                uid: u32::MAX,
                level: None,
            };
        };
        let uid = Uid::from_raw(creds.uid());
        if uid.is_root() || uid == Uid::effective() {
            return Peer {
                uid: uid.as_raw(),
                level: Some(Level::Control),
            };
        }
        // Without SO_PEERGROUPS (Linux before 4.13) only the primary group counts.
        let mut member_of = peer_groups(stream).unwrap_or_default();
        member_of.push(Gid::from_raw(creds.gid()));
        let is_in = |group: &Option<Group>| {
            group
                .as_ref()
                .is_some_and(|group| member_of.contains(&group.gid))
        };
        let level = if is_in(&groups.control) {
            Some(Level::Control)
        } else if is_in(&groups.read) {
            Some(Level::Read)
        } else {
            None
        };
        Peer {
            uid: uid.as_raw(),
            level,
        }
    }

    /// Whether this peer may make `command`; if not, the refusal in words.
    pub fn may(&self, command: &Command, groups: &Groups) -> Result<(), Refusal> {
        let needed = Level::of(command);
        match self.level {
            Some(level) if level >= needed => Ok(()),
            Some(_) => Err(Refusal(format!(
                "permission denied: `{}` may be asked by {} only; uid {} may only read (status, history, next)",
                command.name(),
                groups.who(needed),
                self.uid
            ))),
            None => Err(self.stranger(groups)),
        }
    }

    /// Why a peer that may do nothing is refused.
    pub fn stranger(&self, groups: &Groups) -> Refusal {
        let hint = if groups.any() {
            ""
        } else {
            " (socket_group and read_group in the jobfile let others in)"
        };
        Refusal(format!(
            "permission denied: uid {} may not use this jobd: only {} may{hint}",
            self.uid,
            groups.who(Level::Read)
        ))
    }
}

/// Why a request is refused, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The groups the peer of `stream` was in when it connected (SO_PEERGROUPS).
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<Gid>> {
    let size = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    // Twice at most: when the first buffer is too small, the kernel says how large
    // one must be (up to NGROUPS_MAX, 65536 groups).
    for _ in 0..2 {
        let mut len = (groups.len() * size) as libc::socklen_t;
        // SAFETY: `groups` is valid for writes of `len` bytes; the kernel writes at most
        // that many and sets `len` to what it wrote, or, failing with ERANGE, to what
        // it needs. The descriptor is borrowed from `stream` for the call.
        let result = unsafe {
            libc::getsockopt(
                stream.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if result == 0 {
            groups.truncate(len as usize / size);
            return Ok(groups.into_iter().map(Gid::from_raw).collect());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) {
            return Err(error);
        }
        groups.resize((len as usize).div_ceil(size), 0);
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Groups {
        Groups {
            control: Some(Group {
                name: "ops".into(),
                gid: Gid::from_raw(5000),
            }),
            read: Some(Group {
                name: "web".into(),
                gid: Gid::from_raw(5001),
            }),
        }
    }

    #[test]
    fn each_level_may_do_what_it_is_given_and_no_more() {
        let run = Command::Run {
            job: "x".into(),
            wait: false,
        };
        let reader = Peer {
            uid: 1001,
            level: Some(Level::Read),
        };
        assert_eq!(reader.may(&Command::Status, &groups()), Ok(()));
        let refused = reader.may(&run, &groups()).unwrap_err().0;
        assert!(
            refused.contains("`run` may be asked by root")
                && refused.contains("socket_group `ops`")
                && !refused.contains("read_group")
                && refused.contains("uid 1001 may only read"),
            "{refused}"
        );
        let controller = Peer {
            uid: 1002,
            level: Some(Level::Control),
        };
        assert_eq!(controller.may(&run, &groups()), Ok(()));
        let stranger = Peer {
            uid: 1003,
            level: None,
        };
        let refused = stranger.may(&Command::Status, &groups()).unwrap_err().0;
        assert!(
            refused.contains("uid 1003 may not use this jobd")
                && refused.contains("read_group `web`"),
            "{refused}"
        );
        let alone = stranger.stranger(&Groups::default()).0;
        assert!(
            alone.contains("only root and jobd's own user (uid ")
                && alone.contains("let others in"),
            "{alone}"
        );
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_process_with_everything_allowed() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = Peer::of(&a, &groups());
        assert_eq!(peer.uid, Uid::effective().as_raw());
        assert_eq!(peer.level, Some(Level::Control));
        let own = peer_groups(&a).unwrap();
        assert_eq!(own.len(), nix::unistd::getgroups().unwrap().len());
    }

    #[test]
    fn unknown_groups_are_named_with_their_key() {
        let err = Groups::resolve(Some("root"), Some("no-such-group-here")).unwrap_err();
        assert_eq!(err.key, "read_group");
        assert!(err.to_string().contains("no group `no-such-group-here`"));
    }
}
