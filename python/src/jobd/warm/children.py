"""The server's running children: started, then reaped and reported as `exited`."""

from __future__ import annotations

import os
from typing import Any


class Children:
    def __init__(self) -> None:
        self.runs: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def add(self, pid: int, run_id: str) -> None:
        self.runs[pid] = run_id

    def reap(self) -> list[dict[str, Any]]:
        """`exited` for every child that has ended; one SIGCHLD may stand for several."""
        exits = []
        while self.runs:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            run_id = self.runs.pop(pid, None)
            if run_id is None:
                continue  # a process the preload started and left; not a run
            exited: dict[str, Any] = {"op": "exited", "run_id": run_id, "pid": pid}
            if os.WIFSIGNALED(status):
                exited["signal"] = os.WTERMSIG(status)
            else:
                exited["code"] = os.WEXITSTATUS(status)
            exited["user_cpu_s"] = round(usage.ru_utime, 6)
            exited["system_cpu_s"] = round(usage.ru_stime, 6)
            exited["maxrss_kib"] = usage.ru_maxrss
            exits.append(exited)
        return exits
