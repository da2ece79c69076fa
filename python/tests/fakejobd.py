"""A control socket that answers as jobd does, one JSON line per request."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any


class FakeJobd:
    def __init__(self, path: Path, answer: dict[str, Any] | bytes) -> None:
        self.path = path
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self.server.accept()
            except OSError:
                return
            with peer:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = peer.recv(4096)
                    if not chunk:
                        break
                    line += chunk
                self.requests.append(json.loads(line))
                if isinstance(self.answer, bytes):
                    peer.sendall(self.answer)
                else:
                    peer.sendall(json.dumps(self.answer).encode() + b"\n")

    def close(self) -> None:
        # Closing alone does not wake the thread blocked in accept(); shutdown does.
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(timeout=5)


def run(name: str, outcome: str, started_at: str = "2026-11-27T17:00:00.000000Z") -> dict[str, Any]:
    return {
        "job": name,
        "run_id": f"{name}-1",
        "attempt": 1,
        "scheduled_at": started_at,
        "started_at": started_at,
        "ended_at": started_at,
        "duration_ms": 1200,
        "outcome": outcome,
        "exit_code": 0 if outcome == "succeeded" else 1,
        "signal": None,
        "message": "exited with status 1" if outcome != "succeeded" else "",
    }


def job(name: str, last: dict[str, Any] | None, overdue: bool = False, running: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": "*/5 * * * * *",
        "enabled": True,
        "next": "2026-11-27T17:00:05.000000Z",
        "running": running,
        "last": last,
        "overdue": overdue,
    }


STATUS: dict[str, Any] = {
    "version": 1,
    "kind": "status",
    "daemon": {
        "pid": 4242,
        "version": "0.1.0",
        "started_at": "2026-11-27T16:00:00.000000Z",
        "uptime_seconds": 3600,
        "jobfile": "/srv/app/jobd.yaml",
        "environment": "production",
        "timezone": "Europe/Amsterdam",
    },
    "reload_error": None,
    "problems": ["cannot write the history file: No space left on device"],
    "jobs": [
        job("send_mail", run("send_mail", "succeeded"), running=1),
        job("import_daily", run("import_daily", "failed")),
        job("clear_sessions", None),
        job("monthly_report", run("monthly_report", "succeeded"), overdue=True),
    ],
    "spool": {"dir": "/srv/spool", "queued": 3, "delayed": 1, "running": 2, "retrying": 0, "failed_recently": 4},
}
