"""`submit()` and `check()`: the public way to hand a one-off job to jobd."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

from . import catalog, database, ids
from .errors import SpoolError
from .handoff import hand_off, refuse_taken
from .request import Delay, encode, plain
from .spool import Spool, locate


def submit(
    task: str,
    *args: str,
    data: Any = None,
    env: Mapping[str, str] | None = None,
    delay: Delay | None = None,
    run_at: datetime.datetime | None = None,
    id: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    connection: database.Connection | None = None,
) -> str:
    """Queue one run of `task` (a name in jobd.yaml's `tasks:`); returns its id.

    `args` are appended to the task's command as they are, never through a shell;
    `data` is any JSON value the task reads from its JOBD_SPOOL_FILE; `env` adds
    variables; `delay` (seconds or a timedelta) or `run_at` (an aware datetime) hold
    the run until then; `id` is yours to choose (default: random, sorting by time).

    Whatever jobd would refuse (the task's `accept:` in spool/tasks.json) raises
    SubmitError before anything is written; a spool that jobd has never run on raises
    SpoolMissing.

    In cluster mode, `connection` (a DB-API connection to the cluster's PostgreSQL:
    psycopg, psycopg2, Django's `connection`) inserts the job into the cluster's table
    in that connection's transaction, which the caller commits: the job exists if and
    only if it does. The spool's tasks.json, when there is one here, still refuses up
    front what jobd would refuse; without one, jobd refuses it when a host claims it.
    """
    if connection is not None:
        request_id = ids.new_id() if id is None else id
        database.submit(
            connection, _request(task, args, data, env, delay, run_at, request_id, spool_dir)
        )
        return request_id
    spool, request_id, encoded = _prepare(task, args, data, env, delay, run_at, id, spool_dir)
    hand_off(spool, request_id, encoded)
    return request_id


def check(
    task: str,
    *args: str,
    data: Any = None,
    env: Mapping[str, str] | None = None,
    delay: Delay | None = None,
    run_at: datetime.datetime | None = None,
    id: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Everything `submit()` checks, writing nothing; returns the id it would use.

    For a hand-off that must wait (until a transaction commits): check now, where the
    caller can still act on a refusal, then `submit(..., id=that_id)`.
    """
    _, request_id, _ = _prepare(task, args, data, env, delay, run_at, id, spool_dir)
    return request_id


def _prepare(
    task: str,
    args: tuple[str, ...],
    data: Any,
    env: Mapping[str, str] | None,
    delay: Delay | None,
    run_at: datetime.datetime | None,
    request_id: str | None,
    spool_dir: str | os.PathLike[str] | None,
) -> tuple[Spool, str, bytes]:
    spool = locate(spool_dir)
    spool.require_layout()
    tasks = catalog.load(spool)
    request_id = ids.new_id() if request_id is None else request_id
    encoded = encode(
        tasks, task, args, data=data, env=env, delay=delay, run_at=run_at, request_id=request_id
    )
    refuse_taken(spool, request_id)
    return spool, request_id, encoded


def _request(
    task: str,
    args: tuple[str, ...],
    data: Any,
    env: Mapping[str, str] | None,
    delay: Delay | None,
    run_at: datetime.datetime | None,
    request_id: str,
    spool_dir: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The request for the cluster's table, checked against this host's tasks.json when
    it has one, else for its shape alone."""
    try:
        spool = locate(spool_dir)
        spool.require_layout()
        tasks = catalog.load(spool)
    except SpoolError:
        return plain(task, args, data=data, env=env, delay=delay, run_at=run_at, request_id=request_id)
    encoded = encode(
        tasks, task, args, data=data, env=env, delay=delay, run_at=run_at, request_id=request_id
    )
    request: dict[str, Any] = json.loads(encoded)
    return request
