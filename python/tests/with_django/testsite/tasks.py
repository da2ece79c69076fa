"""Tasks, and things that look like them, for the backend and jobd_task tests."""

from pathlib import Path
from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

CALLED: list[str] = []
NOT_A_TASK = 42


class Boom(Exception):
    pass


@task()
def add(a: int, b: int = 0) -> int:
    return a + b


@task(queue_name="reports")
def report(month: str) -> dict[str, Any]:
    return {"month": month, "rows": 12}


@task()
def boom(message: str) -> None:
    raise Boom(message)


@task(takes_context=True)
def where_am_i(context: Any) -> dict[str, Any]:
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "workers": context.task_result.worker_ids,
        "errors": [e.exception_class_path for e in context.task_result.errors],
    }


@task()
def returns_a_set() -> Any:
    return {1, 2}


@task()
def returns_too_much() -> str:
    return "x" * (1024 * 1024 + 1)


@task()
async def add_later(a: int, b: int) -> int:
    return a + b


def plain_function(marker: str) -> None:
    """Not a Task: jobd_task must never call it."""
    Path(marker).write_text("called")
    CALLED.append(marker)


class NotATask:
    def __init__(self, marker: str) -> None:
        Path(marker).write_text("called")
