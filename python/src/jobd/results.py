"""`result()`: what became of a request, from its result file or from the request itself."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from typing import Any, Literal, cast

from . import ids, times
from .errors import ResultNotFound, SpoolError
from .spool import Snapshot, Spool, locate, snapshot

State = Literal["queued", "delayed", "running", "retrying", "done", "failed", "forwarded"]
# `forwarded`: cluster mode, the request went on to the cluster's table; its row tells
# the rest (`result(id, connection=...)`).
_RESULT_STATES = ("running", "retrying", "done", "failed", "forwarded")
RESULT_SUFFIX = ".result.json"
# A request file is at most 1 MiB; a result holds a value (1 MiB at most) and the
# output lines of each attempt besides.
REQUEST_LIMIT = 1024 * 1024
RESULT_LIMIT = 32 * 1024 * 1024


@dataclass(frozen=True)
class Attempt:
    """One run of a request: `outcome` is None while it runs."""

    attempt: int
    run_id: str | None
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    outcome: str | None
    exit_code: int | None
    signal: str | None
    error: str | None
    value: Any
    value_error: str | None
    output: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.outcome is not None and self.outcome != "success"


@dataclass(frozen=True)
class Result:
    """A request's state (docs/spool-format.md, "The result"). The top-level attempt
    fields are those of the latest attempt; a request still in new/ has none."""

    id: str
    file: str
    state: State
    task: str | None
    attempt: int
    received_at: datetime.datetime | None
    scheduled_at: datetime.datetime | None
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    next_attempt_at: datetime.datetime | None
    outcome: str | None
    exit_code: int | None
    signal: str | None
    reason: str | None
    value: Any
    value_error: str | None
    output: tuple[str, ...]
    attempts: tuple[Attempt, ...]
    data: Any  # the request's `data`, when its file is JSON

    @property
    def errors(self) -> tuple[Attempt, ...]:
        """The attempts that ended without success, in order."""
        return tuple(a for a in self.attempts if a.failed)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


def result(
    id: str,
    spool_dir: str | os.PathLike[str] | None = None,
    connection: Any = None,
) -> Result:
    """The state of the request `id` (what `submit()` returned).

    ValueError for an id that is not one (it could name a path: nothing is read);
    ResultNotFound when no request of that id is in the spool.

    With `connection` (cluster mode, a DB-API connection to the cluster's PostgreSQL),
    from the cluster's table: a job submitted with `submit(..., connection=...)`, or a
    spool file a host forwarded there.
    """
    problem = ids.problem(id)
    if problem:
        raise ValueError(problem)
    if connection is not None:
        from . import database

        return database.result(connection, id)
    spool = locate(spool_dir)
    spool.require_layout()
    name = ids.file_name(id)
    # A request moves new/ → running/ → done/ or failed/ while this looks: folders are
    # read in that order so that it is seen wherever it is, and a second look covers
    # the instant between a file's rename and its result's.
    for _ in range(2):
        found = find(spool, name)
        if found is not None:
            return found
    raise ResultNotFound(
        f"no request {id!r} in {spool.root} (new/, running/, done/ or failed/): never "
        "submitted there, or removed since"
    )


def find(spool: Spool, name: str) -> Result | None:
    """The request whose file is `name`, wherever it is."""
    waiting = snapshot(spool.new / name, REQUEST_LIMIT)
    if waiting is not None:
        return from_request(name, waiting)
    moved: Result | None = None
    for folder in (spool.running, spool.done, spool.failed):
        path = folder / (name + RESULT_SUFFIX)
        read = snapshot(path, RESULT_LIMIT)
        request = snapshot(folder / name, REQUEST_LIMIT)
        if read is not None:
            found = from_result(name, path, read, _request(request))
            if request is None and folder != spool.failed:
                # Filed on between the two reads (its result is written in the next
                # folder first): look there, and keep this in case it is gone.
                moved = moved or found
                continue
            return found
        if request is not None and folder == spool.running:
            # Claimed an instant ago, its result not written yet.
            return _claimed(name, request)
    return moved


def _claimed(name: str, read: Snapshot) -> Result:
    waiting = from_request(name, read)
    return dataclasses.replace(waiting, state="running", received_at=None, scheduled_at=None)


def from_request(name: str, read: Snapshot) -> Result:
    """A file in new/: queued, or delayed until its run_at (or arrival + delay)."""
    request = _request(read)
    arrived = datetime.datetime.fromtimestamp(read.ctime, times.UTC)
    scheduled = arrived
    try:
        if isinstance(request.get("run_at"), str):
            scheduled = times.parse_time(request["run_at"])
        elif "delay" in request:
            scheduled = arrived + times.parse_duration(request["delay"])
    except ValueError:
        pass  # jobd will refuse the file, and say why in its result
    task = request.get("task")
    return Result(
        id=_id_of(name, request),
        file=name,
        state="delayed" if scheduled > times.now() else "queued",
        task=task if isinstance(task, str) else None,
        attempt=0,
        received_at=arrived,
        scheduled_at=scheduled,
        started_at=None,
        ended_at=None,
        next_attempt_at=None,
        outcome=None,
        exit_code=None,
        signal=None,
        reason=None,
        value=None,
        value_error=None,
        output=(),
        attempts=(),
        data=request.get("data"),
    )


def from_result(name: str, path: os.PathLike[str], read: Snapshot, request: dict[str, Any]) -> Result:
    """An `X.result.json` as jobd writes it."""
    try:
        if read.data is None:
            raise ValueError("not a regular file of at most 32 MiB")
        fields = _Fields(json.loads(read.data))
        state = fields.text("state")
        if state not in _RESULT_STATES:
            raise ValueError(f"state {state!r} is none of {', '.join(_RESULT_STATES)}")
        return Result(
            id=fields.text("id") or _id_of(name, request),
            file=name,
            state=cast(State, state),
            task=fields.text("task"),
            attempt=fields.number("attempt") or 0,
            received_at=fields.time("received_at"),
            scheduled_at=fields.time("scheduled_at"),
            started_at=fields.time("started_at"),
            ended_at=fields.time("ended_at"),
            next_attempt_at=fields.time("next_attempt_at"),
            outcome=fields.text("outcome"),
            exit_code=fields.number("exit_code"),
            signal=fields.text("signal"),
            reason=fields.text("reason"),
            value=fields.raw.get("value"),
            value_error=fields.text("value_error"),
            output=fields.lines("output"),
            attempts=tuple(_attempt(a) for a in fields.items("attempts")),
            data=request.get("data"),
        )
    except ValueError as e:
        raise SpoolError(
            f"{os.fspath(path)} is not a result this package reads ({e}): "
            "is the jobd package older than jobd?"
        ) from None


def _attempt(entry: Any) -> Attempt:
    fields = _Fields(entry)
    return Attempt(
        attempt=fields.number("attempt") or 0,
        run_id=fields.text("run_id"),
        started_at=fields.time("started_at"),
        ended_at=fields.time("ended_at"),
        outcome=fields.text("outcome"),
        exit_code=fields.number("exit_code"),
        signal=fields.text("signal"),
        error=fields.text("error"),
        value=fields.raw.get("value"),
        value_error=fields.text("value_error"),
        output=fields.lines("output"),
    )


class _Fields:
    """Typed reads of one JSON object; a field of the wrong type is a ValueError, a
    missing one None (a newer jobd may add fields, an older one lacks some)."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        self.raw: dict[str, Any] = raw

    def _typed(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        value = self.raw.get(key)
        if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
            return value
        raise ValueError(f"`{key}` is not {what}")

    def text(self, key: str) -> str | None:
        return cast("str | None", self._typed(key, (str,), "a string"))

    def number(self, key: str) -> int | None:
        return cast("int | None", self._typed(key, (int,), "a whole number"))

    def time(self, key: str) -> datetime.datetime | None:
        value = self.text(key)
        return None if value is None else times.parse_time(value)

    def items(self, key: str) -> list[Any]:
        return cast("list[Any]", self._typed(key, (list,), "a list") or [])

    def lines(self, key: str) -> tuple[str, ...]:
        values = self.items(key)
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"`{key}` is not a list of strings")
        return tuple(values)


def _request(read: Snapshot | None) -> dict[str, Any]:
    """A request file's fields, or none when it is not a JSON object (a YAML file
    from another client, or not a request at all)."""
    if read is None or read.data is None:
        return {}
    try:
        request = json.loads(read.data)
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


def _id_of(name: str, request: dict[str, Any]) -> str:
    given = request.get("id")
    if isinstance(given, str):
        return given
    return name[: -len(".json")] if name.endswith(".json") else name

