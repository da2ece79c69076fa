"""Finding a Task by its module path, and nothing but a Task."""

from __future__ import annotations

import inspect
from typing import Any

from django.utils.module_loading import import_string

from . import compat
from .payload import Payload


def load(payload: Payload) -> Any:
    """The Task the payload names, on the queue and backend it was enqueued with.

    A request's module path is text a spool writer chose: anything importable that is
    not a Task object (a plain function, a class, `os.system`) is refused, never called.
    """
    try:
        found = import_string(payload.module_path)
    except ImportError as e:
        raise compat.InvalidTask(f"cannot import {payload.module_path!r}: {e}") from e
    if not isinstance(found, compat.Task):
        raise compat.InvalidTask(
            f"{payload.module_path!r} is {_describe(found)}, not a Task: only functions "
            "decorated with @task run as Django tasks"
        )
    return found.using(queue_name=payload.queue_name, backend=payload.backend)


def _describe(found: Any) -> str:
    if inspect.isclass(found):
        return "a class"
    if inspect.ismodule(found):
        return "a module"
    if callable(found):
        return "a plain function" if inspect.isfunction(found) else "a callable"
    return f"a {type(found).__name__}"
