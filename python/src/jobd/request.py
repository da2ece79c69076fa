"""A request file's content, checked as jobd will check it (docs/spool-format.md)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import ids, times
from .catalog import Catalog, TaskInfo
from .errors import SubmitError
from .suggest import closest

Delay = int | float | datetime.timedelta
# A century: anything longer is a unit mistake, and would overflow a timedelta.
_MAX_DELAY_SECONDS = 100 * 365 * 86400


def encode(
    catalog: Catalog,
    task: str,
    args: Sequence[object],
    *,
    data: Any,
    env: Mapping[str, str] | None,
    delay: Delay | None,
    run_at: datetime.datetime | None,
    request_id: str,
) -> bytes:
    """The request's JSON bytes; SubmitError naming the first thing jobd would refuse."""
    info = _task(catalog, task)
    request: dict[str, Any] = {"task": task, "id": _id(catalog, request_id)}
    if args:
        request["args"] = _args(catalog, info, args)
    if env:
        request["env"] = _env(catalog, info, env)
    if data is not None:
        request["data"] = _data(info, data)
    when = _when(delay, run_at)
    if when:
        request.update(when)
    encoded = (json.dumps(request, ensure_ascii=False, allow_nan=False) + "\n").encode()
    limit = catalog.limits.max_file_bytes
    if len(encoded) > limit:
        raise SubmitError(
            f"the request is {len(encoded)} bytes, more than the {limit} a spool file may have"
        )
    return encoded


def plain(
    task: str,
    args: Sequence[object],
    *,
    data: Any,
    env: Mapping[str, str] | None,
    delay: Delay | None,
    run_at: datetime.datetime | None,
    request_id: str,
) -> dict[str, Any]:
    """A request checked for its shape alone, for a host without jobd's tasks.json:
    what only the jobfile can tell (the task, what it accepts) jobd checks when a host
    claims it."""
    if not isinstance(task, str) or not task:
        raise SubmitError(f"a task is named by a string, not {task!r}")
    problem = ids.problem(request_id)
    if problem:
        raise SubmitError(problem)
    request: dict[str, Any] = {"task": task, "id": request_id}
    if args:
        for number, arg in enumerate(args, 1):
            if not isinstance(arg, str) or "\0" in arg:
                raise SubmitError(f"argument {number} is not a string without NUL characters")
        request["args"] = list(args)
    if env:
        for name, value in env.items():
            if not isinstance(name, str) or not isinstance(value, str) or not name or "=" in name:
                raise SubmitError(f"env {name!r}: names and values are strings")
        request["env"] = dict(env)
    if data is not None:
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise SubmitError(f"data is not JSON: {e}") from None
        request["data"] = data
    when = _when(delay, run_at)
    if when:
        request.update(when)
    return request


def _task(catalog: Catalog, task: object) -> TaskInfo:
    if not isinstance(task, str):
        raise SubmitError(f"a task is named by a string, not {type(task).__name__}")
    info = catalog.tasks.get(task)
    if info is not None:
        return info
    names = sorted(catalog.tasks)
    known = ", ".join(names) if names else "none"
    guess = closest(task, names)
    hint = f": did you mean `{guess}`?" if guess else ""
    raise SubmitError(f"unknown task `{task}`{hint} (the jobfile's tasks: {known})")


def _id(catalog: Catalog, request_id: str) -> str:
    problem = ids.problem(request_id, catalog.limits.max_id_chars)
    if problem:
        raise SubmitError(problem)
    return request_id


def _args(catalog: Catalog, info: TaskInfo, args: Sequence[object]) -> list[str]:
    accept = info.accept
    if not accept.args:
        raise SubmitError(
            f"task `{info.name}` accepts no arguments (its `accept: args:` is empty): "
            f"{len(args)} given"
        )
    if len(args) > accept.max_args:
        raise SubmitError(
            f"task `{info.name}` accepts at most {accept.max_args} arguments "
            f"(`accept: max_args:`): {len(args)} given"
        )
    patterns = [_Pattern(text) for text in accept.args]
    checked = []
    for number, arg in enumerate(args, 1):
        if not isinstance(arg, str):
            raise SubmitError(
                f"argument {number} is {type(arg).__name__}, not a string: "
                "arguments go on a command line as they are"
            )
        if "\0" in arg:
            raise SubmitError(f"argument {number} contains a NUL character")
        _match(info, patterns, number, arg)
        checked.append(arg)
    size = sum(len(arg.encode()) for arg in checked)
    if size > catalog.limits.max_args_bytes:
        raise SubmitError(
            f"the arguments are {size} bytes together, more than the "
            f"{catalog.limits.max_args_bytes} a spool file may pass"
        )
    return checked


class _Pattern:
    """One `accept.args` pattern, anchored at both ends as jobd anchors it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.is_option = text.startswith("-")
        try:
            self.compiled: re.Pattern[str] | None = re.compile(text)
        except re.error:
            # Rust's regex syntax is not Python's (\p{L}, for one): a pattern Python
            # cannot read is left for jobd to judge rather than refused here.
            self.compiled = None

    def matches(self, arg: str) -> bool | None:
        """Whether the whole of `arg` matches; None when only jobd can tell."""
        if self.compiled is None:
            return None
        return self.compiled.fullmatch(arg) is not None


def _match(info: TaskInfo, patterns: list[_Pattern], number: int, arg: str) -> None:
    option = arg.startswith("-")
    eligible = [p for p in patterns if p.is_option or not option]
    verdicts = [p.matches(arg) for p in eligible]
    if any(verdicts) or None in verdicts:
        return
    listed = ", ".join(p.text for p in patterns)
    words = (
        f"argument {number} `{arg}` matches none of task `{info.name}`'s "
        f"`accept: args:` patterns ({listed})"
    )
    if option and any(p.matches(arg) for p in patterns if not p.is_option):
        words += "; an argument starting with `-` only matches a pattern starting with `-`"
    raise SubmitError(words)


def _env(catalog: Catalog, info: TaskInfo, env: Mapping[str, str]) -> dict[str, str]:
    checked = {}
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise SubmitError(f"env {name!r}: names and values are strings")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise SubmitError(f"env {name!r}: not a variable name, or a NUL in its value")
        if catalog.forbidden_env.forbids(name):
            raise SubmitError(
                f"`{name}` may not be set by a spool file: it could change the program that runs"
            )
        if name not in info.accept.env:
            accepted = ", ".join(sorted(info.accept.env))
            raise SubmitError(
                f"task `{info.name}` does not accept `{name}` from a file"
                + (f" (its `accept: env:` is {accepted})" if accepted else
                   " (its `accept: env:` is empty)")
            )
        checked[name] = value
    return checked


def _data(info: TaskInfo, data: Any) -> Any:
    if not info.accept.data:
        raise SubmitError(
            f"task `{info.name}` does not accept `data` (it needs `accept: {{data: true}}` "
            "in jobd.yaml)"
        )
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SubmitError(f"data is not JSON: {e}") from None
    return data


def _when(delay: Delay | None, run_at: datetime.datetime | None) -> dict[str, str] | None:
    if delay is not None and run_at is not None:
        raise SubmitError("give delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime.datetime):
            raise SubmitError(f"run_at is a datetime, not {type(run_at).__name__}")
        if run_at.utcoffset() is None:
            raise SubmitError(
                "run_at must be timezone-aware (django.utils.timezone.now() + ..., or "
                "datetime.now(timezone.utc) + ...)"
            )
        return {"run_at": times.format_time(run_at)}
    if delay is not None:
        if isinstance(delay, datetime.timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise SubmitError(
                f"delay is seconds (a number) or a timedelta, not {type(delay).__name__}"
            )
        if not 0 <= seconds < _MAX_DELAY_SECONDS:
            raise SubmitError(
                f"delay must be from 0 to {_MAX_DELAY_SECONDS} seconds, not {seconds}"
            )
        return {"delay": times.format_duration(datetime.timedelta(seconds=seconds))}
    return None
