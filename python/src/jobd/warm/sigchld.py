"""SIGCHLD as a readable pipe, so that the server's one poll() also wakes for exits."""

from __future__ import annotations

import os
import signal
from types import FrameType


def _wake(signum: int, frame: FrameType | None) -> None:
    """Nothing to do here: the byte Python writes to the wakeup pipe is the event."""


def install() -> int:
    """Returns the pipe's read end."""
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, _wake)
    return read


def drain(read: int) -> None:
    try:
        while os.read(read, 512):
            pass
    except BlockingIOError:
        pass


def uninstall() -> None:
    """In a child, first of all: a signal arriving later would write a byte to the
    wakeup descriptor's number, which the child closes and may reuse for a file."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
