import os
import time
from pathlib import Path
from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


class Flaky(Exception):
    pass


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fail(message: str) -> None:
    raise Flaky(message)


@task()
def entered() -> float:
    """When the function was entered, to compare with run_after."""
    return time.time()


@task(takes_context=True)
def outlive_jobd(context: Any, markers: str) -> int:
    """The first attempt says it started (and its pid), then waits to be killed; a
    later one returns the attempt number it was given."""
    if context.attempt == 1:
        Path(markers, "attempt-1.pid").write_text(str(os.getpid()))
        time.sleep(600)
    return int(context.attempt)


def plain_function(marker: str) -> None:
    """Not a Task: jobd_task must refuse to call it."""
    Path(marker).write_text("called")
