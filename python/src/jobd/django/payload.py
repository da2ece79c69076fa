"""The `data` of a Django task's request: which Task, with what arguments.

    {"module_path": "shop.tasks.send_receipt", "args": [42], "kwargs": {"copy": true},
     "queue_name": "default", "backend": "default"}

Arguments travel here, never in argv: the jobd task's command line stays fixed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", re.ASCII)


@dataclass(frozen=True)
class Payload:
    module_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue_name: str
    backend: str

    def to_data(self) -> dict[str, Any]:
        return {
            "module_path": self.module_path,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue_name": self.queue_name,
            "backend": self.backend,
        }

    @classmethod
    def from_data(cls, data: Any) -> Payload:
        """ValueError when `data` is not a Django task's request."""
        if not isinstance(data, dict):
            raise ValueError("its `data` is not a Django task's (a mapping with module_path)")
        module_path = data.get("module_path")
        if not isinstance(module_path, str) or not _MODULE_PATH.fullmatch(module_path):
            raise ValueError(f"its module_path {module_path!r} is not a dotted Python path")
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("its args are not a list, or its kwargs not a mapping")
        queue_name, backend = data.get("queue_name"), data.get("backend")
        if not isinstance(queue_name, str) or not isinstance(backend, str):
            raise ValueError("its queue_name or backend is not a string")
        return cls(module_path, args, kwargs, queue_name, backend)


def json_problem(value: Any, where: str) -> str | None:
    """Why `value` would not come back equal from a JSON round trip, or None."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}, which JSON cannot hold"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = json_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}: JSON keys are strings"
            problem = json_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    hint = ": it would come back as a list" if isinstance(value, tuple) else ""
    return f"{where} is a {kind}, which does not survive a JSON round trip{hint}"
