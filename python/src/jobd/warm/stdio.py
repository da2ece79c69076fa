"""The child's sys.stdin, sys.stdout and sys.stderr, made as a fresh interpreter makes
them for the descriptors it was given."""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

_DEFAULT_ERRORS = ("strict", "strict", "backslashreplace")


def flush() -> None:
    """Flushes the server's streams: whatever they buffer would otherwise be copied into
    the next child and written once more by it."""
    for stream in standard_streams():
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a broken log pipe to jobd must not stop the runs


def standard_streams() -> list[TextIO]:
    """sys.stdout and sys.stderr, and the interpreter's originals if code replaced them."""
    seen: list[TextIO] = []
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None and all(stream is not s for s in seen):
            seen.append(stream)
    return seen


def replace(unbuffered: bool) -> dict[int, TextIO]:
    """New streams on descriptors 0, 1 and 2, as sys.* and sys.__*__. Returns the old
    stream objects mapped (by id) to their replacements, so that references the preload
    kept (logging handlers) can be moved over.

    Fresh objects rather than the server's: those were set up for the server's
    descriptors (their seekability, line buffering and read-ahead belong to /dev/null
    and jobd's log pipes). Like a fresh interpreter's, stdout is line-buffered only on a
    terminal, stderr always, and both write through when PYTHONUNBUFFERED is set for
    the run. The old objects do not own their descriptors (closefd=False, as Python
    opens them), so dropping them closes nothing.
    """
    olds = [(sys.stdin, sys.__stdin__), (sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)]
    news: list[io.TextIOWrapper] = []
    for fd, (current, original) in enumerate(olds):
        model = original or current
        encoding = getattr(model, "encoding", None) or "utf-8"
        errors = getattr(model, "errors", None) or _DEFAULT_ERRORS[fd]
        news.append(_open(fd, encoding, errors, unbuffered))
    replaced: dict[int, TextIO] = {}
    for new, pair in zip(news, olds):
        for old in pair:
            if old is not None:
                replaced[id(old)] = new
    for name, new in zip(("stdin", "stdout", "stderr"), news):
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)
    return replaced


def _open(fd: int, encoding: str, errors: str, unbuffered: bool) -> io.TextIOWrapper:
    if fd == 0:
        return io.TextIOWrapper(
            open(0, "rb", closefd=False), encoding, errors, newline="\n"
        )
    write_through = unbuffered
    line_buffering = fd == 2 or os.isatty(fd)
    buffer = open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
    return io.TextIOWrapper(
        buffer, encoding, errors, newline="\n",
        line_buffering=line_buffering, write_through=write_through,
    )
