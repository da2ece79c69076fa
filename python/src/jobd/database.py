"""Cluster mode's table: a one-off job submitted through the application's own
database connection (in its transaction: the job exists if and only if the
transaction commits), and its state read back.

Any DB-API 2 connection to the cluster's PostgreSQL whose paramstyle is `format` or
`pyformat` (`%s`) will do: psycopg 3, psycopg2, or Django's `connection`. Nothing is
committed here: that is the caller's transaction to end.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any, Protocol

from . import times
from .errors import JobdError, ResultNotFound, SubmitError
from .results import Result, _attempt, _Fields

# `jobd.submit` announces the job on the channel the hosts listen to, inside the same
# transaction: they hear of it when, and only if, it commits.
_SUBMIT = (
    "SELECT id, created FROM jobd.submit(%s, %s::jsonb, %s::jsonb, %s::jsonb, "
    "%s::timestamptz, %s * interval '1 second', NULL, %s)"
)

# By the submitter's id (its origin), or as a spool file a host forwarded
# (`<host_id>/<id>.json`), through the unique index either way.
_FIND = (
    "SELECT o.state, o.task, o.attempt, o.result::text, o.data::text, "
    "extract(epoch FROM o.run_at), extract(epoch FROM o.submitted_at), "
    "extract(epoch FROM o.started_at), extract(epoch FROM o.finished_at), "
    "extract(epoch FROM now()) "
    "FROM jobd.oneoffs o "
    "WHERE o.origin = %s OR o.origin IN (SELECT h.host_id || '/' || %s FROM jobd.hosts h) "
    "ORDER BY o.id DESC LIMIT 1"
)


class Cursor(Protocol):
    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def close(self) -> Any: ...


class Connection(Protocol):
    """What this module needs of a DB-API connection."""

    def cursor(self) -> Any: ...


def submit(connection: Connection, request: dict[str, Any]) -> None:
    """Insert `request` (the fields of a spool request, its id included) into the
    cluster's table, in the connection's current transaction."""
    delay = request.get("delay")
    params = (
        request["task"],
        json.dumps(request.get("args", [])),
        json.dumps(request.get("env", {})),
        json.dumps(request["data"]) if "data" in request else None,
        request.get("run_at"),
        times.parse_duration(delay).total_seconds() if delay is not None else None,
        request["id"],
    )
    row = _one(connection, _SUBMIT, params, "submitting to the cluster's table")
    if row is None or not row[1]:
        raise SubmitError(
            f"id {request['id']!r} is already in use in the cluster's table: choose "
            "another, or leave id= out for a random one"
        )


def result(connection: Connection, request_id: str) -> Result:
    """The state of the one-off job `request_id`, from the cluster's table."""
    row = _one(
        connection,
        _FIND,
        (request_id, request_id + ".json"),
        "reading the cluster's table",
    )
    if row is None:
        raise ResultNotFound(
            f"no one-off job {request_id!r} in the cluster's table (jobd.oneoffs): never "
            "submitted, its transaction rolled back, or pruned since (after 7 days)"
        )
    return from_row(request_id, row)


def from_row(request_id: str, row: Any) -> Result:
    """A row of `_FIND` as a Result: the row says where the job is, its `result`
    (written by jobd as a spool result) what its attempts did."""
    state, task, attempt, recorded, data, run_at, submitted, started, finished, now = row
    recorded_fields = _Fields(json.loads(recorded) if recorded else {})
    run_at_time = _epoch(run_at)
    db_now = _epoch(now)
    if state == "queued" and attempt == 0:
        due_later = run_at_time is not None and db_now is not None and run_at_time > db_now
        shown = "delayed" if due_later else "queued"
    elif state == "queued":
        shown = "retrying"
    elif state in ("running", "done", "failed"):
        shown = state
    else:
        raise JobdError(f"one-off {request_id!r} has the state {state!r}, unknown to this package")
    latest = recorded_fields if shown in ("done", "failed") else _Fields({})
    return Result(
        id=request_id,
        file=recorded_fields.text("file") or f"{request_id}.json",
        state=shown,  # type: ignore[arg-type]
        task=task,
        attempt=int(attempt),
        received_at=_epoch(submitted),
        scheduled_at=run_at_time,
        started_at=_epoch(started),
        ended_at=_epoch(finished) if shown in ("done", "failed") else None,
        next_attempt_at=run_at_time if shown == "retrying" else None,
        outcome=latest.text("outcome"),
        exit_code=latest.number("exit_code"),
        signal=latest.text("signal"),
        reason=recorded_fields.text("reason") if shown == "failed" else None,
        value=latest.raw.get("value"),
        value_error=latest.text("value_error"),
        output=latest.lines("output"),
        attempts=tuple(_attempt(a) for a in recorded_fields.items("attempts")),
        data=json.loads(data) if data else None,
    )


def _epoch(value: float | Decimal | None) -> datetime.datetime | None:
    if value is None:
        return None
    return datetime.datetime.fromtimestamp(float(value), times.UTC)


def _one(connection: Connection, sql: str, params: tuple[Any, ...], doing: str) -> Any:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    except JobdError:
        raise
    except Exception as e:
        # The driver's own error, said with what was being done; the transaction is
        # the caller's to roll back.
        raise JobdError(
            f"{doing}: {e} (is this the cluster's database, migrated with `jobd migrate`?)"
        ) from e
    finally:
        cursor.close()
