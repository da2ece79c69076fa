"""A jobd result as a TaskResult of Django's task framework."""

from __future__ import annotations

from typing import Any

from ..results import Attempt, Result
from . import compat
from .exceptions import AttemptFailed, RequestRefused

_STATUS = {
    "queued": "READY",
    "delayed": "READY",
    "retrying": "READY",
    "running": "RUNNING",
    "done": "SUCCESSFUL",
    "failed": "FAILED",
    # Sent on to the cluster's table and not looked up there: it waits, as far as is
    # known here.
    "forwarded": "READY",
}

_OUTCOMES = {
    "failure": "exited with status {exit_code}",
    "killed": "was killed by {signal}",
    "timeout": "timed out",
    "spawn_error": "could not start",
    "stopped": "was stopped by jobd",
    "interrupted": "was interrupted: jobd died while it ran",
    "lost": "was lost with its host",
}


def task_result(task: Any, alias: str, found: Result, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """`found` (jobd's result of a Django task's request) as a TaskResult."""
    attempts = found.attempts
    errors = [task_error(a) for a in found.errors]
    if found.state == "failed" and not errors:
        errors.append(_error(RequestRefused, found.reason or "jobd refused the request"))
    result = compat.TaskResult(
        task=task,
        id=found.id,
        status=compat.TaskResultStatus[_STATUS[found.state]],
        enqueued_at=found.received_at,
        started_at=attempts[0].started_at if attempts else None,
        finished_at=found.ended_at if found.finished else None,
        last_attempted_at=attempts[-1].started_at if attempts else None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        # TaskContext.attempt counts these: one per attempt, named by jobd's run id.
        worker_ids=[a.run_id or f"attempt-{a.attempt}" for a in attempts],
    )
    if found.state == "done":
        object.__setattr__(result, "_return_value", found.value)
    return result


def task_error(attempt: Attempt) -> Any:
    """The TaskError of a failed attempt: the exception jobd_task wrote, or else what
    jobd saw of the attempt."""
    error = attempt.value.get("error") if isinstance(attempt.value, dict) else None
    if (
        isinstance(error, dict)
        and isinstance(error.get("exception_class"), str)
        and isinstance(error.get("traceback"), str)
    ):
        return compat.TaskError(
            exception_class_path=error["exception_class"], traceback=error["traceback"]
        )
    what = _OUTCOMES.get(attempt.outcome or "", "ended with outcome {outcome}").format(
        exit_code=attempt.exit_code, signal=attempt.signal, outcome=attempt.outcome
    )
    lines = [f"attempt {attempt.attempt} (run {attempt.run_id}) {what}"]
    if attempt.error:
        lines.append(attempt.error)
    if attempt.output:
        lines += ["its last output lines:", *attempt.output]
    return _error(AttemptFailed, "\n".join(lines))


def exception_path(kind: type[BaseException]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _error(kind: type[BaseException], text: str) -> Any:
    return compat.TaskError(exception_class_path=exception_path(kind), traceback=text)
