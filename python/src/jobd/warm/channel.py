"""The socket to jobd: one JSON object per SOCK_SEQPACKET packet, with file descriptors
attached by SCM_RIGHTS."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 256 * 1024
# A run carries three (stdin, stdout, stderr); one more lets a fourth be seen and refused
# instead of the kernel dropping it silently behind MSG_CTRUNC.
MAX_FDS = 4


class ProtocolError(Exception):
    """A message jobd sent that this server cannot act on."""


@dataclass
class Packet:
    message: dict[str, Any]
    fds: list[int]

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = True

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise ProtocolError(f"fd {fd} (JOBD_RUNTIME_FD): {e.strerror}") from None
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
            raise ProtocolError(f"fd {fd} (JOBD_RUNTIME_FD) is not a Unix SOCK_SEQPACKET socket")
        return cls(sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> Packet | None:
        """The next packet, or None at end of file: jobd will send nothing more, but may
        still read (a shutdown(SHUT_WR) is a quit that keeps the exits coming)."""
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        except (ConnectionResetError, BrokenPipeError):
            data, fds, flags = b"", [], 0
        if not data and not fds:
            return None
        packet = Packet({}, fds)
        try:
            if flags & socket.MSG_TRUNC:
                raise ProtocolError(f"a message longer than {MAX_MESSAGE} bytes")
            if flags & socket.MSG_CTRUNC:
                raise ProtocolError(f"a message with more than {MAX_FDS} file descriptors")
            try:
                message = json.loads(data)
            except ValueError as e:
                raise ProtocolError(f"a message that is not JSON ({e})") from None
            if not isinstance(message, dict):
                raise ProtocolError(f"a message that is not a JSON object: {data[:80]!r}")
        except ProtocolError:
            packet.close_fds()
            raise
        packet.message = message
        return packet

    def send(self, message: dict[str, Any]) -> None:
        """Sends one message; once jobd has gone, sends are dropped (nobody is left to
        tell, and the children still have to be reaped)."""
        if not self.connected:
            return
        data = json.dumps(message, ensure_ascii=False).encode()
        try:
            self.sock.send(data)
        except (BrokenPipeError, ConnectionResetError):
            self.connected = False
