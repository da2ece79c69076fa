"""A spool laid out as jobd lays it, with a tasks.json and results written by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FOLDERS = ("tmp", "new", "running", "done", "failed")

DEFAULT_TASKS: dict[str, Any] = {
    "long_report": {
        "accept": {
            "args": ["--month", r"\d{4}-\d{2}", "--email", r"[^@\s]+@[^@\s]+"],
            "max_args": 4,
            "env": ["REPORT_LANG"],
            "data": False,
        },
        "retries": 2,
        "max_instances": None,
    },
    "django_task": {"accept": {"data": True}, "retries": 1, "max_instances": None},
    "bare": {"retries": 0, "max_instances": 1},
}

FORBIDDEN_ENV = {
    "names": ["PATH", "HOME"],
    "prefixes": ["LD_", "PYTHON"],
    "suffixes": ["_PATH"],
    "substrings": ["SETTINGS"],
}


class FakeSpool:
    def __init__(self, root: Path, tasks: dict[str, Any] | None = None) -> None:
        self.root = root
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.write_tasks(DEFAULT_TASKS if tasks is None else tasks)

    def write_tasks(self, tasks: dict[str, Any], **top: Any) -> None:
        document = {
            "version": 1,
            "tasks": tasks,
            "limits": {"max_file_bytes": 1048576, "max_args_bytes": 131072, "max_id_chars": 128},
            "forbidden_env": FORBIDDEN_ENV,
        }
        document.update(top)
        (self.root / "tasks.json").write_text(json.dumps(document))

    def files(self, folder: str) -> list[str]:
        return sorted(os.listdir(self.root / folder))

    def request(self, folder: str, request_id: str, **fields: Any) -> Path:
        """A request file as a client (or jobd's claim) leaves it."""
        path = self.root / folder / f"{request_id}.json"
        path.write_text(json.dumps({"task": "django_task", "id": request_id, **fields}))
        return path

    def result(self, folder: str, request_id: str, **fields: Any) -> Path:
        """A request and its `X.result.json`, as jobd writes them."""
        request = fields.pop("request", {})
        self.request(folder, request_id, **request)
        document = {
            "version": 1,
            "file": f"{request_id}.json",
            "id": request_id,
            "task": "django_task",
            "received_at": "2026-11-27T17:30:05.000000Z",
            "scheduled_at": "2026-11-27T17:30:05.000000Z",
            "attempt": 0,
            "started_at": None,
            "ended_at": None,
            "next_attempt_at": None,
            "outcome": None,
            "exit_code": None,
            "signal": None,
            "reason": None,
            "value": None,
            "value_error": None,
            "output": [],
            "attempts": [],
        }
        document.update(fields)
        path = self.root / folder / f"{request_id}.json.result.json"
        path.write_text(json.dumps(document))
        return path


def attempt(number: int, outcome: str | None, **fields: Any) -> dict[str, Any]:
    """One entry of a result's `attempts`."""
    entry = {
        "attempt": number,
        "run_id": f"run-{number}",
        "started_at": f"2026-11-27T17:3{number}:00.000000Z",
        "ended_at": None if outcome is None else f"2026-11-27T17:3{number}:01.500000Z",
        "outcome": outcome,
        "exit_code": {None: None, "success": 0, "failure": 1}.get(outcome),
        "signal": None,
        "error": None,
        "value": None,
        "value_error": None,
        "output": [],
    }
    entry.update(fields)
    return entry
