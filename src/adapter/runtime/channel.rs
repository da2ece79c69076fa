//! jobd's end of the socket to a runtime server: one JSON object per packet
//! (SOCK_SEQPACKET), the run's descriptors passed along with `run`.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

/// The largest packet either side sends.
pub const MAX_PACKET: usize = 256 * 1024;

/// What jobd says to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToServer<'a> {
    Hello {
        version: u32,
        runtime: &'a str,
        preload: &'a [String],
    },
    Run {
        run_id: &'a str,
        argv: &'a [String],
        env: &'a std::collections::BTreeMap<String, String>,
        cwd: &'a str,
    },
    Quit,
}

/// What a server says to jobd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromServer {
    Ready {
        pid: i32,
    },
    Failed {
        error: String,
    },
    Started {
        run_id: String,
        pid: i32,
    },
    SpawnError {
        run_id: String,
        error: String,
    },
    Exited {
        run_id: String,
        pid: i32,
        #[serde(default)]
        code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
    },
}

/// What one read from the socket found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Message(FromServer),
    /// A packet that is not one of the messages: logged and ignored.
    Garbage(String),
    /// Nothing more now.
    Empty,
    /// The server closed its end (or sent the zero-length packet that means it).
    Closed,
}

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair: jobd's channel, and the end the server gets as its fd 3
    /// (close-on-exec: the spawn makes fd 3 a copy).
    pub fn pair() -> io::Result<(Channel, OwnedFd)> {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        // The server's end blocks: its loop polls it.
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )?;
        Ok((Channel { fd: mine }, theirs))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Send one message, with `fds` attached. A full socket (a server that stopped
    /// reading) is an error, never a wait.
    pub fn send(&self, message: &ToServer, fds: &[BorrowedFd]) -> io::Result<()> {
        let bytes = serde_json::to_vec(message).expect("a message serializes");
        if bytes.len() > MAX_PACKET {
            return Err(io::Error::other(format!(
                "the message is {} bytes, more than the {MAX_PACKET} a packet may hold",
                bytes.len()
            )));
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &[IoSlice::new(&bytes)],
                cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read one packet, without waiting.
    pub fn receive(&self) -> Received {
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            return match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => Received::Closed,
                Ok(n) => match serde_json::from_slice::<FromServer>(&buf[..n]) {
                    Ok(message) => Received::Message(message),
                    Err(e) => Received::Garbage(format!(
                        "{e}: {}",
                        String::from_utf8_lossy(&buf[..n.min(200)])
                    )),
                },
                Err(Errno::EAGAIN) => Received::Empty,
                Err(Errno::EINTR) => continue,
                Err(_) => Received::Closed,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_with_their_descriptors_and_a_closed_end_is_seen() {
        let (channel, theirs) = Channel::pair().unwrap();
        let (read, _write) = nix::unistd::pipe().unwrap();
        channel.send(&ToServer::Quit, &[read.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let n = recv(theirs.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..n], br#"{"op":"quit"}"#);
        assert_eq!(channel.receive(), Received::Empty);
        let send = |text: &[u8]| {
            nix::sys::socket::send(theirs.as_raw_fd(), text, MsgFlags::empty()).unwrap();
        };
        send(br#"{"op": "exited", "run_id": "r", "pid": 7, "signal": 9, "maxrss_kib": 1}"#);
        assert_eq!(
            channel.receive(),
            Received::Message(FromServer::Exited {
                run_id: "r".into(),
                pid: 7,
                code: None,
                signal: Some(9)
            })
        );
        send(b"nonsense");
        assert!(matches!(channel.receive(), Received::Garbage(_)));
        drop(theirs);
        assert_eq!(channel.receive(), Received::Closed);
    }
}
