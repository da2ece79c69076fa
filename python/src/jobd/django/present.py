"""jobd's overview in the words and rows that jobd_status and the admin page show."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.utils import timezone

from ..overview import Job, Overview
from ..results import Result

_FOLDER_TITLES = {
    "new": "new/ (queued or delayed)",
    "running": "running/ (running or waiting to retry)",
    "done": "done/",
    "failed": "failed/ (failed or refused)",
}


@dataclass(frozen=True)
class JobLine:
    name: str
    schedule: str
    next: str
    last: str
    result: str
    running: int
    alert: bool  # overdue or failing: shown first, and marked


@dataclass(frozen=True)
class OneOffLine:
    id: str
    state: str
    task: str
    detail: str
    alert: bool


@dataclass(frozen=True)
class FolderView:
    title: str
    count: int
    lines: tuple[OneOffLine, ...]


def daemon_line(overview: Overview) -> str | None:
    d = overview.daemon
    if not d:
        return None
    return (
        f"jobd {d.get('version')} (pid {d.get('pid')}), up {_span(int(d.get('uptime_seconds') or 0))}, "
        f"environment {d.get('environment') or 'none'}, time zone {d.get('timezone')}, "
        f"jobfile {d.get('jobfile')}"
    )


def counts_line(overview: Overview) -> str | None:
    c = overview.counts
    if not c:
        return None
    return (
        f"jobd counts {c.get('queued', 0)} queued, {c.get('delayed', 0)} delayed, "
        f"{c.get('running', 0)} running, {c.get('retrying', 0)} waiting to retry, "
        f"{c.get('failed_recently', 0)} failed in the last 24h"
    )


def job_lines(overview: Overview, now: datetime.datetime) -> tuple[JobLine, ...] | None:
    if overview.jobs is None:
        return None
    return tuple(_job_line(job, now) for job in overview.jobs)


def _job_line(job: Job, now: datetime.datetime) -> JobLine:
    if not job.enabled:
        upcoming = "disabled"
    elif job.next is None:
        upcoming = "never"
    else:
        upcoming = _when(job.next, now)
    if job.last_started_at is None:
        last, result = "-", "-"
    else:
        took = f", took {job.last_duration_ms / 1000:g}s" if job.last_duration_ms is not None else ""
        last = _when(job.last_started_at, now) + took
        result = job.last_outcome or "-"
        if job.failing and job.last_message:
            result += f": {job.last_message}"
    if job.overdue:
        result = f"OVERDUE, last {result}"
    return JobLine(
        name=job.name,
        schedule=job.schedule,
        next=upcoming,
        last=last,
        result=result,
        running=job.running,
        alert=job.overdue or job.failing,
    )


def folder_views(overview: Overview, now: datetime.datetime) -> tuple[FolderView, ...]:
    return tuple(
        FolderView(
            title=_FOLDER_TITLES[folder.name],
            count=folder.count,
            lines=tuple(_one_off(r, now) for r in folder.recent),
        )
        for folder in overview.folders
    )


def _one_off(found: Result, now: datetime.datetime) -> OneOffLine:
    if found.state == "queued":
        detail = f"since {_when(found.received_at, now)}"
    elif found.state == "delayed":
        detail = f"until {_when(found.scheduled_at, now)}"
    elif found.state == "running":
        detail = f"attempt {found.attempt}, started {_when(found.started_at, now)}"
    elif found.state == "retrying":
        detail = (
            f"attempt {found.attempt} {_outcome(found)}; next attempt "
            f"{_when(found.next_attempt_at, now)}"
        )
    elif found.state == "done":
        detail = f"attempt {found.attempt} succeeded, ended {_when(found.ended_at, now)}"
    elif found.reason:
        detail = found.reason
    else:
        detail = f"attempt {found.attempt} {_outcome(found)}, ended {_when(found.ended_at, now)}"
    return OneOffLine(
        id=found.id,
        state=found.state,
        task=found.task or "?",
        detail=detail,
        alert=found.state in ("retrying", "failed"),
    )


def _outcome(found: Result) -> str:
    if found.outcome == "failure" and found.exit_code is not None:
        return f"failed (exit {found.exit_code})"
    if found.outcome == "killed" and found.signal:
        return f"was killed ({found.signal})"
    return f"ended: {found.outcome or 'unknown'}"


def _when(at: datetime.datetime | None, now: datetime.datetime) -> str:
    if at is None:
        return "-"
    seconds = round((at - now).total_seconds())
    if seconds == 0:
        relative = "now"
    else:
        relative = f"in {_span(seconds)}" if seconds > 0 else f"{_span(-seconds)} ago"
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S} ({relative})"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
