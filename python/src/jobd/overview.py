"""Scheduled and one-off jobs at a glance: from jobd's control socket, and from the
spool folders (which is all there is while jobd is down)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

from . import control, times
from .errors import JobdError
from .listing import Folder, list_spool
from .spool import locate

# Both vocabularies: jobd's history (`succeeded`) and the spool's (`success`).
_SUCCESS = ("success", "succeeded")


@dataclass(frozen=True)
class Job:
    """A scheduled job as `jobctl status` shows it."""

    name: str
    schedule: str
    enabled: bool
    next: datetime.datetime | None
    running: int
    overdue: bool
    last_outcome: str | None
    last_started_at: datetime.datetime | None
    last_duration_ms: int | None
    last_message: str | None

    @property
    def failing(self) -> bool:
        return self.last_outcome is not None and self.last_outcome not in _SUCCESS


@dataclass(frozen=True)
class Overview:
    source: str  # which source each part came from, in words
    daemon: dict[str, Any] | None  # pid, version, started_at ... when jobd answered
    problems: tuple[str, ...]  # jobd's PROBLEM lines and its last failed reload
    jobs: tuple[Job, ...] | None  # None: jobd did not answer, so unknown
    counts: dict[str, int] | None  # jobd's own one-off counts, when it answered
    spool_dir: str | None
    folders: tuple[Folder, ...]
    spool_error: str | None  # why the spool folders could not be read


def overview(
    socket_path: str | os.PathLike[str] | None,
    spool_dir: str | os.PathLike[str] | None,
    recent: int = 20,
) -> Overview:
    """Ask jobd on `socket_path`; read the one-off jobs from `spool_dir`'s folders."""
    status: dict[str, Any] | None = None
    if socket_path is None:
        heard = "no control socket configured (JOBD_SOCKET)"
    else:
        try:
            status = control.request(socket_path, "status")
            heard = f"jobd's control socket {os.fspath(socket_path)}"
        except control.ControlError as e:
            heard = f"no answer from jobd: {e}"
    spool_root: str | None = None
    folders: tuple[Folder, ...] = ()
    spool_error = None
    try:
        spool = locate(spool_dir)
        spool_root = str(spool.root)
        spool.require_layout()
        folders = list_spool(spool, recent)
    except JobdError as e:
        spool_error = str(e)
    where = f"the spool folders in {spool_root}" if spool_root else "no spool"
    if status is None:
        source = f"{heard}; scheduled jobs unknown; one-off jobs from {where}"
    else:
        source = f"scheduled jobs from {heard}; one-off jobs from {where}"
    return Overview(
        source=source,
        daemon=status.get("daemon") if status else None,
        problems=_problems(status) if status else (),
        jobs=_jobs(status) if status else None,
        counts=status.get("spool") if status else None,
        spool_dir=spool_root,
        folders=folders,
        spool_error=spool_error,
    )


def _problems(status: dict[str, Any]) -> tuple[str, ...]:
    problems = [str(p) for p in status.get("problems") or ()]
    if status.get("reload_error"):
        problems.insert(
            0, f"the last reload failed, the previous jobfile is in use: {status['reload_error']}"
        )
    return tuple(problems)


def _jobs(status: dict[str, Any]) -> tuple[Job, ...]:
    jobs = [_job(entry) for entry in status.get("jobs") or () if isinstance(entry, dict)]
    # Overdue first, then failing, each in jobd's own order.
    jobs.sort(key=lambda job: (not job.overdue, not job.failing))
    return tuple(jobs)


def _job(entry: dict[str, Any]) -> Job:
    last = entry.get("last") if isinstance(entry.get("last"), dict) else None
    return Job(
        name=str(entry.get("name", "?")),
        schedule=str(entry.get("schedule", "")),
        enabled=bool(entry.get("enabled", True)),
        next=_time(entry.get("next")),
        running=int(entry.get("running") or 0),
        overdue=bool(entry.get("overdue")),
        last_outcome=str(last["outcome"]) if last and last.get("outcome") else None,
        last_started_at=_time(last.get("started_at")) if last else None,
        last_duration_ms=last.get("duration_ms") if last else None,
        last_message=last.get("message") if last else None,
    )


def _time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return times.parse_time(value)
    except ValueError:
        return None
