"""Importing the preload in the server, once, so that a run costs only a fork."""

from __future__ import annotations

import importlib
import os
import threading
import traceback

from . import django_support

# The whole traceback is worth showing, but `failed` must stay far below the 256 KiB
# message limit even for a deep recursion; the innermost frames say the most.
TRACEBACK_LIMIT = 32 * 1024


class PreloadError(Exception):
    """The preload cannot be used; the message is the `failed` error jobd shows."""


def import_preload(entries: list[str]) -> None:
    """`django` first (django.setup(), every command, every app's tasks), then the other
    entries in order, then the check that nothing left a thread behind."""
    ordered = (["django"] if "django" in entries else []) + [e for e in entries if e != "django"]
    for entry in ordered:
        try:
            if entry == "django":
                django_support.preload()
            else:
                importlib.import_module(entry)
        except (Exception, SystemExit) as e:
            raise PreloadError(describe(f"preload {entry}", e)) from None
    left = extra_threads()
    if left:
        raise PreloadError(
            f"the preload left {len(left)} thread(s) running: {', '.join(left)}; "
            "jobd.warm forks only from a single-threaded process (a fork copies only the "
            "thread that forks, and any lock another thread held stays locked in the child): "
            "start threads when a run needs them, not at import"
        )


def describe(where: str, error: BaseException) -> str:
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if len(trace) > TRACEBACK_LIMIT:
        trace = "...\n" + trace[-TRACEBACK_LIMIT:]
    return f"{where}: {summary}\n{trace}"


def extra_threads() -> list[str]:
    """Every thread but this one: Python's, and on Linux also those an extension started
    in C, which the threading module cannot see."""
    main = threading.main_thread()
    named = {t.native_id: t.name for t in threading.enumerate() if t is not main}
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except FileNotFoundError:
        return list(named.values())
    left = []
    for tid in tids:
        if tid == main.native_id:
            continue
        name = named.get(tid)
        if name is None:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f"{f.read().strip()} (not a Python thread)"
            except FileNotFoundError:
                continue
        left.append(f"{name} [tid {tid}]")
    return left
