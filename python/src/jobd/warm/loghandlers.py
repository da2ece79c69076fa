"""The logging handlers the preload configured (django.setup() applies LOGGING), moved
off what the child is about to lose.

The child closes every descriptor it inherited. A handler still holding one of them
would fail, or, once the run opens a file or a socket that gets the same number, write
its records into that. So before the descriptors are closed: file handlers close their
file and reopen it on their next record, as a cold run opens it; syslog and socket
handlers close their socket (a close, not a shutdown: the server's copy stays open) and
connect again when they next send; stream handlers on the server's std streams move to
the child's.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO


def release(replaced_streams: dict[int, TextIO]) -> None:
    if "logging" not in sys.modules:
        return  # nothing imported logging, so no handler exists
    handlers = sys.modules.get("logging.handlers")
    for handler in _attached_handlers():
        if isinstance(handler, logging.FileHandler):
            old = handler.setStream(None)  # type: ignore[arg-type]
            if old is not None:
                old.close()
        elif isinstance(handler, logging.StreamHandler):
            new = replaced_streams.get(id(handler.stream))
            if new is not None:
                handler.setStream(new)
        elif handlers is not None and isinstance(handler, handlers.SysLogHandler):
            _close_syslog_socket(handler)
        elif handlers is not None and isinstance(handler, handlers.SocketHandler):
            if handler.sock is not None:
                handler.sock.close()
                handler.sock = None


def _attached_handlers() -> list[logging.Handler]:
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    seen: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):  # placeholders have none
            seen.setdefault(id(handler), handler)
    return list(seen.values())


def _close_syslog_socket(handler: Any) -> None:
    sock = handler.socket
    if sock is None:
        return
    sock.close()
    if hasattr(handler, "createSocket"):
        # Python 3.11+ creates a new socket in emit() when this is None. Before 3.11
        # the closed socket stays: a send on it fails, and a handler on a Unix socket
        # (/dev/log, the usual one) connects again by itself.
        handler.socket = None
