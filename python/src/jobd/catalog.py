"""`spool/tasks.json`: the tasks jobd runs from the spool and what each accepts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from .errors import SpoolError
from .spool import Spool, snapshot

VERSION = 1
# tasks.json lists every task of a jobfile: far below this, even with 20,000 of them.
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Accept:
    """A task's `accept:`; by default a file may ask for nothing beyond the task."""

    args: tuple[str, ...] = ()
    max_args: int = 16
    env: frozenset[str] = frozenset()
    data: bool = False


@dataclass(frozen=True)
class TaskInfo:
    name: str
    accept: Accept
    retries: int
    max_instances: int | None


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 1024 * 1024
    max_args_bytes: int = 128 * 1024
    max_id_chars: int = 128


@dataclass(frozen=True)
class ForbiddenEnv:
    """Names no file may set whatever its task accepts (compared upper-case)."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    substrings: tuple[str, ...] = ()

    def forbids(self, name: str) -> bool:
        upper = name.upper()
        return (
            upper in self.names
            or any(upper.startswith(p) for p in self.prefixes)
            or any(upper.endswith(s) for s in self.suffixes)
            or any(s in upper for s in self.substrings)
        )


@dataclass(frozen=True)
class Catalog:
    tasks: Mapping[str, TaskInfo]
    limits: Limits
    forbidden_env: ForbiddenEnv


def load(spool: Spool) -> Catalog:
    """Read the spool's tasks.json (the caller has checked the layout)."""
    path = spool.tasks_json
    read = snapshot(path, _MAX_BYTES)
    if read is None or read.data is None:
        raise SpoolError(f"{path} is not a regular file of at most {_MAX_BYTES} bytes")
    try:
        document = json.loads(read.data)
    except ValueError as e:
        raise SpoolError(f"{path} is not JSON ({e}): jobd rewrites it at its next start") from e
    try:
        return _catalog(document)
    except _Malformed as e:
        raise SpoolError(f"{path}: {e}") from None


class _Malformed(Exception):
    pass


def _catalog(document: Any) -> Catalog:
    top = _mapping(document, "the file")
    version = top.get("version")
    if version != VERSION:
        raise _Malformed(
            f"version {version!r}, and this package reads version {VERSION}: "
            "install the jobd package that matches this jobd"
        )
    tasks = {
        name: _task(name, entry)
        for name, entry in _mapping(top.get("tasks", {}), "`tasks`").items()
    }
    limits = _mapping(top.get("limits", {}), "`limits`")
    forbidden = _mapping(top.get("forbidden_env", {}), "`forbidden_env`")
    defaults = Limits()
    return Catalog(
        tasks=tasks,
        limits=Limits(
            max_file_bytes=_int(limits, "max_file_bytes", "`limits`", defaults.max_file_bytes),
            max_args_bytes=_int(limits, "max_args_bytes", "`limits`", defaults.max_args_bytes),
            max_id_chars=_int(limits, "max_id_chars", "`limits`", defaults.max_id_chars),
        ),
        forbidden_env=ForbiddenEnv(
            names=frozenset(n.upper() for n in _strings(forbidden, "names", "`forbidden_env`")),
            prefixes=tuple(p.upper() for p in _strings(forbidden, "prefixes", "`forbidden_env`")),
            suffixes=tuple(s.upper() for s in _strings(forbidden, "suffixes", "`forbidden_env`")),
            substrings=tuple(
                s.upper() for s in _strings(forbidden, "substrings", "`forbidden_env`")
            ),
        ),
    )


def _task(name: str, entry: Any) -> TaskInfo:
    where = f"task `{name}`"
    fields = _mapping(entry, where)
    accept = _mapping(fields.get("accept") or {}, f"{where}'s `accept`")
    defaults = Accept()
    data = accept.get("data", False)
    if not isinstance(data, bool):
        raise _Malformed(f"{where}'s `accept.data` is not true or false")
    max_instances = fields.get("max_instances")
    if max_instances is not None and not _is_int(max_instances):
        raise _Malformed(f"{where}'s `max_instances` is not a number")
    return TaskInfo(
        name=name,
        accept=Accept(
            args=tuple(_strings(accept, "args", f"{where}'s `accept`")),
            max_args=_int(accept, "max_args", f"{where}'s `accept`", defaults.max_args),
            env=frozenset(_strings(accept, "env", f"{where}'s `accept`")),
            data=data,
        ),
        retries=_int(fields, "retries", where, 0),
        max_instances=max_instances,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{where} is not a mapping")
    return value


def _strings(fields: dict[str, Any], key: str, where: str) -> list[str]:
    value = fields.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Malformed(f"{where}.{key} is not a list of strings")
    return value


def _int(fields: dict[str, Any], key: str, where: str, default: int) -> int:
    value = fields.get(key)
    if value is None:
        return default
    if not _is_int(value):
        raise _Malformed(f"{where}.{key} is not a number")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
