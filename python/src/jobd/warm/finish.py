"""A run's end, as a cold `python ...` ends: its exit status from SystemExit or an
uncaught exception, then the interpreter's own finalization (non-daemon threads
joined, atexit handlers, std streams flushed), then the process exits with no cleanup of
the server's state (os._exit)."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import TracebackType
from typing import NoReturn

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Py_FinalizeEx's status when flushing stdout or stderr fails at exit.
FLUSH_FAILED = 120


def status_of(error: BaseException | None) -> int:
    """What the cold interpreter would exit with, printing what it would print."""
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        return _system_exit_status(error.code)
    _print_uncaught(error)
    return 1


def exit_process(status: int, interrupted: bool) -> NoReturn:
    """`interrupted`: the run ended by a KeyboardInterrupt nobody caught."""
    try:
        _finalize()
    except BaseException:
        pass  # as Python ignores what fails at this point
    if not _flush_std_streams():
        status = FLUSH_FAILED
    if interrupted:
        # Python ends a KeyboardInterrupt nobody caught by dying of SIGINT itself, so
        # that its parent sees the signal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _system_exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        # Python passes the code to exit() as a C int: the kernel keeps its low byte.
        return code & 0xFF if -(2**31) <= code < 2**31 else 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_uncaught(error: BaseException) -> None:
    traceback = _run_frames(error.__traceback__)
    try:
        sys.excepthook(type(error), error.with_traceback(traceback), traceback)
    except BaseException:
        sys.__excepthook__(type(error), error, traceback)


def _run_frames(traceback: TracebackType | None) -> TracebackType | None:
    """The traceback without the server's frames above the run's, which a cold run's
    does not have (runpy's frames of a -m run stay: a cold -m run shows them too)."""
    tb = traceback
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
            return tb
        tb = tb.tb_next
    return traceback


def _finalize() -> None:
    # Py_FinalizeEx's order: wait for non-daemon threads, then the atexit handlers.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()


def _flush_std_streams() -> bool:
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed
