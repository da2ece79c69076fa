"""The child's parent-death signal: SIGKILL when the server dies (Linux's prctl)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


class ParentDeath:
    """Resolves prctl once in the server, so that a child makes no dlopen of its own."""

    def __init__(self) -> None:
        self._prctl: Any = None
        if sys.platform.startswith("linux"):
            self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm(self, server_pid: int) -> None:
        if self._prctl is None:
            return
        if self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
        # The server may have died between the fork and the prctl, when no signal
        # was armed yet: then this child is already an orphan and must go as it would have.
        if os.getppid() != server_pid:
            os.kill(os.getpid(), signal.SIGKILL)
