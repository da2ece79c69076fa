//! systemd notifications: READY, STATUS, RELOADING, STOPPING.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::Dir;

/// Every datagram that arrives within `within`, until one contains `until`.
fn receive_until(socket: &UnixDatagram, until: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.contains(until);
            messages.push(message);
            if done {
                break;
            }
        }
    }
    messages
}

#[test]
fn jobd_tells_systemd_ready_status_reloading_and_stopping() {
    let dir = Dir::new(
        "jobs:\n  tick:\n    every: 1s\n    command: [echo]\n  child_env:\n    every: 1s\n    command: 'echo \"notify=${NOTIFY_SOCKET:-unset}\" > env.out'\n",
    );
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut jobd = dir.start_with(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);

    let ready = receive_until(&socket, "READY=1", Duration::from_secs(10));
    let first = ready.last().expect("a READY=1 message");
    assert!(
        first.contains("READY=1") && first.contains("STATUS=2 jobs"),
        "{ready:?}"
    );

    jobd.signal(Signal::SIGHUP);
    let reload = receive_until(&socket, "READY=1", Duration::from_secs(10));
    let reloading = reload
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .expect("RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC beside RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(reload.last().unwrap().contains("READY=1"), "{reload:?}");

    assert!(crate::harness::eventually(Duration::from_secs(10), || !dir
        .lines("env.out")
        .is_empty()));
    assert_eq!(
        dir.lines("env.out"),
        ["notify=unset"],
        "jobs do not inherit NOTIFY_SOCKET"
    );

    jobd.signal(Signal::SIGTERM);
    let stopping = receive_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(
        stopping.iter().any(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    assert_eq!(jobd.wait_exit(Duration::from_secs(30)), Some(0));
}
