"""The messages jobd sends, checked into the values the server acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .channel import Packet, ProtocolError

VERSION = 1


@dataclass(frozen=True)
class Hello:
    runtime: str
    preload: list[str]


@dataclass(frozen=True)
class Run:
    run_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: int
    stdout: int
    stderr: int


def parse_hello(packet: Packet) -> Hello:
    message = packet.message
    packet.close_fds()
    if message.get("op") != "hello":
        raise ProtocolError(f"expected hello first, got op {message.get('op')!r}")
    version = message.get("version")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r} is not supported (jobd.warm speaks {VERSION})")
    preload = message.get("preload", [])
    if not isinstance(preload, list) or not all(isinstance(p, str) and p for p in preload):
        raise ProtocolError(f"hello: preload must be a list of module names, got {preload!r}")
    return Hello(runtime=str(message.get("runtime", "")), preload=preload)


def run_id_of(message: dict[str, Any]) -> str:
    run_id = message.get("run_id")
    return run_id if isinstance(run_id, str) else ""


def parse_run(packet: Packet) -> Run:
    """On a ProtocolError the packet's descriptors are left for the caller to close."""
    message = packet.message
    run_id = run_id_of(message)
    where = f"run {run_id!r}"
    if not run_id:
        raise ProtocolError("run: run_id must be a non-empty string")
    argv = message.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ProtocolError(f"{where}: argv must be a non-empty list of strings, got {argv!r}")
    env = message.get("env")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        raise ProtocolError(f"{where}: env must map variable names to strings")
    if any("\0" in s for s in [*argv, *env, *env.values()]):
        raise ProtocolError(f"{where}: argv and env cannot hold NUL characters")
    cwd = message.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        raise ProtocolError(f"{where}: cwd must be a non-empty string, got {cwd!r}")
    if len(packet.fds) != 3:
        raise ProtocolError(
            f"{where}: carries {len(packet.fds)} file descriptors, not 3 (stdin, stdout, stderr)"
        )
    stdin, stdout, stderr = packet.fds
    return Run(run_id, argv, env, cwd, stdin, stdout, stderr)
