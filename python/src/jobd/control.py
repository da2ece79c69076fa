"""jobd's control socket: one JSON object per line each way (src/control/protocol.rs)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from .errors import JobdError

VERSION = 1
# `status` of 20,000 jobs stays well below this; a peer that sends more is not jobd.
_MAX_ANSWER = 64 * 1024 * 1024


class ControlError(JobdError):
    """jobd did not answer on its socket, or answered with an error."""


def request(path: str | os.PathLike[str], command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command, return jobd's answer (a `kind` and its fields)."""
    where = os.fspath(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.settimeout(timeout)
            peer.connect(where)
            peer.sendall(json.dumps({"version": VERSION, "command": command}).encode() + b"\n")
            line = _read_line(peer, where)
    except FileNotFoundError:
        raise ControlError(f"jobd is not running (no socket at {where})") from None
    except ConnectionRefusedError:
        raise ControlError(f"jobd is not running (nothing listens on {where})") from None
    except PermissionError:
        raise ControlError(
            f"not allowed to use {where}: this user must be in jobd's `read_group` "
            "(status) and able to reach the socket's folder"
        ) from None
    except socket.timeout:
        raise ControlError(f"jobd did not answer on {where} within {timeout:g}s") from None
    except OSError as e:
        raise ControlError(f"cannot talk to jobd on {where}: {e.strerror or e}") from None
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlError(f"the answer on {where} is not JSON: is it jobd's socket?") from None
    if not isinstance(answer, dict) or answer.get("version") != VERSION:
        raise ControlError(
            f"jobd on {where} speaks another protocol version ({answer.get('version')!r})"
            if isinstance(answer, dict)
            else f"the answer on {where} is not a JSON object"
        )
    if answer.get("kind") == "error":
        raise ControlError(f"jobd refused `{command}`: {answer.get('message')}")
    return answer


def _read_line(peer: socket.socket, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = peer.recv(65536)
        if not chunk:
            raise ControlError(f"jobd closed {where} before answering")
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_ANSWER:
            raise ControlError(f"the answer on {where} is longer than {_MAX_ANSWER} bytes")
