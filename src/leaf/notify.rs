//! systemd's notification protocol (sd_notify), without libsystemd: one datagram per
//! state change to `$NOTIFY_SOCKET`. Without that variable every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use log::warn;

/// Default: not under systemd, nothing is sent.
#[derive(Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`: how often to say WATCHDOG=1.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, which must be
    /// ours), then remove them so that jobs do not inherit them.
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .map_or(true, |pid| pid == std::process::id().to_string())
            })
            .filter(|usec| *usec > 0)
            .map(|usec| Duration::from_micros(usec / 2));
        // SAFETY: called once at start-up, before any other thread exists (jobd has
        // one thread), so nothing reads the environment concurrently.
        unsafe {
            for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
                std::env::remove_var(name);
            }
        }
        let socket = path.and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let address = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name),
                None => SocketAddr::from_pathname(&path),
            };
            match (UnixDatagram::unbound(), address) {
                (Ok(socket), Ok(address)) => Some((socket, address)),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(
                        "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                        path.to_string_lossy()
                    );
                    None
                }
            }
        });
        Notifier {
            watchdog: watchdog.filter(|_| socket.is_some()),
            socket,
        }
    }

    /// Send `state` (newline-separated `KEY=value` lines).
    pub fn send(&self, state: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(e) = socket.send_to_addr(state.as_bytes(), address)
        {
            warn!("cannot notify systemd ({state:?}): {e}");
        }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `RELOADING=1` with the monotonic timestamp systemd wants beside it.
    pub fn reloading(&self) {
        if self.enabled() {
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
                .unwrap_or(0);
            self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
        }
    }
}
