"""What `manage.py jobd_task` does: run the Task a spool request names, once, as the
attempt jobd started, and hand back its value or its error."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.utils import timezone

from ..errors import JobdError
from ..results import REQUEST_LIMIT, RESULT_SUFFIX, Result, from_result
from ..spool import snapshot
from . import compat, mapping, tasks
from .payload import Payload

# What jobd keeps of JOBD_RESULT_FILE (docs/spool-format.md).
VALUE_LIMIT = 1024 * 1024


class Unusable(Exception):
    """jobd_task was not started by jobd for a request it can run."""


def run(environ: Mapping[str, str]) -> int:
    """Run the request of JOBD_SPOOL_FILE; 0 when its Task succeeded, else 1.

    The value (the Task's return value), or `{"error": {"exception_class": "pkg.Cls",
    "traceback": "..."}}` when it raised or could not be run, goes to JOBD_RESULT_FILE.
    """
    spool_file = environ.get("JOBD_SPOOL_FILE")
    result_file = environ.get("JOBD_RESULT_FILE")
    if not spool_file or not result_file:
        raise Unusable(
            "JOBD_SPOOL_FILE and JOBD_RESULT_FILE are not set: jobd runs this command for a "
            "spool request (a task with `command: [..., manage.py, jobd_task]` and "
            "`accept: {data: true}` in jobd.yaml), and a jobd older than the spool format "
            "of this package sets neither"
        )
    attempt = int(environ.get("JOBD_ATTEMPT") or 1)
    run_id = environ.get("JOBD_RUN_ID") or f"attempt-{attempt}"
    try:
        request = _read_request(Path(spool_file))
        payload = Payload.from_data(request.get("data"))
        task = tasks.load(payload)
    except Exception as e:
        # Retrying will not help, but jobd decides that: say why, as the attempt's error.
        _fail(Path(result_file), e)
        return 1
    earlier = _earlier(Path(spool_file), request)
    now = timezone.now()
    first = earlier.attempts[0].started_at if earlier and earlier.attempts else None
    task_result = compat.TaskResult(
        task=task,
        id=_request_id(request, Path(spool_file)),
        status=compat.TaskResultStatus.RUNNING,
        enqueued_at=earlier.received_at if earlier else None,
        started_at=first or now,
        finished_at=None,
        last_attempted_at=now,
        args=payload.args,
        kwargs=payload.kwargs,
        backend=payload.backend,
        errors=[mapping.task_error(a) for a in earlier.errors] if earlier else [],
        worker_ids=_worker_ids(earlier, attempt, run_id),
    )
    sender = type(task.get_backend())
    compat.task_started.send(sender=sender, task_result=task_result)
    try:
        if task.takes_context:
            context = compat.TaskContext(task_result=task_result)
            value = task.call(context, *payload.args, **payload.kwargs)
        else:
            value = task.call(*payload.args, **payload.kwargs)
        encoded = _encode(value)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        error = _fail(Path(result_file), e)
        object.__setattr__(task_result, "status", compat.TaskResultStatus.FAILED)
        object.__setattr__(task_result, "finished_at", timezone.now())
        task_result.errors.append(error)
        # Inside the handler, as Django's own backends send it: receivers may log
        # the exception with sys.exc_info().
        compat.task_finished.send(sender=sender, task_result=task_result)
        return 1
    Path(result_file).write_bytes(encoded)
    object.__setattr__(task_result, "status", compat.TaskResultStatus.SUCCESSFUL)
    object.__setattr__(task_result, "finished_at", timezone.now())
    object.__setattr__(task_result, "_return_value", json.loads(encoded))
    compat.task_finished.send(sender=sender, task_result=task_result)
    return 0


def _read_request(path: Path) -> dict[str, Any]:
    read = snapshot(path, REQUEST_LIMIT)
    if read is None or read.data is None:
        raise Unusable(f"JOBD_SPOOL_FILE {path} is not a regular file of at most 1 MiB")
    try:
        request = json.loads(read.data)
    except ValueError:
        raise Unusable(
            f"JOBD_SPOOL_FILE {path} is not JSON: jobd_task runs the requests that "
            "jobd.django's backend writes, which are JSON (YAML is for other clients' tasks)"
        ) from None
    if not isinstance(request, dict):
        raise Unusable(f"JOBD_SPOOL_FILE {path} is not a JSON object")
    return request


def _earlier(spool_file: Path, request: dict[str, Any]) -> Result | None:
    """jobd's result beside the request: the errors and run ids of earlier attempts."""
    path = Path(str(spool_file) + RESULT_SUFFIX)
    try:
        read = snapshot(path, 32 * 1024 * 1024)
        return None if read is None else from_result(spool_file.name, path, read, request)
    except JobdError:
        return None  # the attempt runs all the same, with less history


def _request_id(request: dict[str, Any], spool_file: Path) -> str:
    given = request.get("id")
    return given if isinstance(given, str) else spool_file.name.removesuffix(".json")


def _worker_ids(earlier: Result | None, attempt: int, run_id: str) -> list[str]:
    """One id per attempt so far, as TaskContext.attempt counts them: jobd's run ids,
    this attempt's from JOBD_RUN_ID."""
    known = {a.attempt: a.run_id for a in earlier.attempts if a.run_id} if earlier else {}
    known[attempt] = run_id
    return [known.get(n) or f"attempt-{n}" for n in range(1, attempt + 1)]


def _encode(value: Any) -> bytes:
    encoded = json.dumps(compat.normalize_json(value), allow_nan=False).encode()
    if len(encoded) > VALUE_LIMIT:
        raise ValueError(
            f"the return value is {len(encoded)} bytes of JSON, more than the "
            f"{VALUE_LIMIT} jobd keeps: return less, or store it and return where"
        )
    return encoded


def _fail(result_file: Path, error: BaseException) -> Any:
    """Write the error as the attempt's value, print it for jobd's log; its TaskError."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    print(text, file=sys.stderr, end="")
    kind = mapping.exception_path(type(error))
    result_file.write_text(json.dumps({"error": {"exception_class": kind, "traceback": text}}))
    return compat.TaskError(exception_class_path=kind, traceback=text)
