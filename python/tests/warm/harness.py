"""jobd's side of the warm runtime protocol, in Python: starts `python -m jobd.warm` with
fd 3 on a SOCK_SEQPACKET pair, sends hello and runs with pipes as the run's stdio, reads
what comes back. Every wait has a cap; every process started is stopped by its pid."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
PROJECT = HERE / "project"
PYTHON = sys.executable
# Generous: a 2-core machine under load can be slow to start Django.
CAP = 60.0


def base_env(**extra: str) -> dict[str, str]:
    """A small, explicit environment: what a run may see is known."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        # No __pycache__ in the source tree from a test run.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


@dataclass
class Result:
    run_id: str
    pid: int
    stdout: str
    stderr: str
    exited: dict[str, Any]

    @property
    def code(self) -> int | None:
        return self.exited.get("code")

    @property
    def signal(self) -> int | None:
        return self.exited.get("signal")


@dataclass
class Pending:
    run_id: str
    pid: int
    stdout: int
    stderr: int


class Server:
    def __init__(self, preload: list[str], env: dict[str, str] | None = None,
                 cwd: Path = PROJECT, log_dir: Path | None = None) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server_env = base_env(**(env or {}))
        server_env["PYTHONPATH"] = f"{SRC}:{PROJECT}"
        server_env["JOBD_RUNTIME"] = "test"
        server_env["JOBD_RUNTIME_FD"] = "3"
        self.log_dir = log_dir
        out = open(log_dir / "server.out", "wb") if log_dir else subprocess.DEVNULL
        err = open(log_dir / "server.err", "wb") if log_dir else subprocess.DEVNULL
        fd = theirs.fileno()

        def onto_fd3() -> None:
            # subprocess keeps a descriptor's number; the protocol wants this one at 3.
            os.dup2(fd, 3)
            os.closerange(4, 65536)

        self.proc = subprocess.Popen(
            [PYTHON, "-m", "jobd.warm"], cwd=cwd, env=server_env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            close_fds=False, preexec_fn=onto_fd3, process_group=0,
        )
        theirs.close()
        for f in (out, err):
            if not isinstance(f, int):
                f.close()
        self.sock.settimeout(CAP)
        self.inbox: list[dict[str, Any]] = []
        self.running: dict[str, int] = {}  # run_id -> pid, until its `exited`
        self.reported_pids: list[int] = []
        self.counter = 0
        self.ready: dict[str, Any] | None = None

    # -- messages --------------------------------------------------------------------

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def receive(self) -> dict[str, Any] | None:
        data = self.sock.recv(256 * 1024)
        if not data:
            return None
        message: dict[str, Any] = json.loads(data)
        return message

    def wait_for(self, op: str, run_id: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + CAP
        while True:
            for i, m in enumerate(self.inbox):
                if m.get("op") == op and (run_id is None or m.get("run_id") == run_id):
                    return self.inbox.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {op} for {run_id} within {CAP}s; got {self.inbox}")
            message = self.receive()
            if message is None:
                raise EOFError(f"server closed fd 3 while waiting for {op} {run_id}; "
                               f"got {self.inbox}{self.logs()}")
            self.note(message)

    def note(self, message: dict[str, Any]) -> None:
        if message.get("op") == "started":
            self.running[message["run_id"]] = message["pid"]
            self.reported_pids.append(message["pid"])
        elif message.get("op") == "exited":
            self.running.pop(message["run_id"], None)
        self.inbox.append(message)

    def hello(self, preload: list[str]) -> dict[str, Any]:
        self.send({"op": "hello", "version": 1, "runtime": "test", "preload": preload})
        message = self.receive()
        if message is None:
            raise EOFError(f"server closed fd 3 before ready{self.logs()}")
        if message["op"] == "ready":
            self.ready = message
        return message

    # -- runs ------------------------------------------------------------------------

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path = PROJECT, stdin: bytes = b"") -> Pending:
        self.counter += 1
        run_id = f"run-{self.counter}"
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.send({"op": "run", "run_id": run_id, "argv": argv,
                   "env": env if env is not None else base_env(), "cwd": str(cwd)},
                  [in_r, out_w, err_w])
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        os.write(in_w, stdin)  # small: fits the pipe's buffer
        os.close(in_w)
        started = self.wait_for_start(run_id)
        return Pending(run_id, started["pid"], out_r, err_r)

    def wait_for_start(self, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + CAP
        while True:
            for i, m in enumerate(self.inbox):
                if m.get("run_id") == run_id and m["op"] in ("started", "spawn_error"):
                    message = self.inbox.pop(i)
                    if message["op"] == "spawn_error":
                        raise SpawnError(message["error"])
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError(f"no started for {run_id}")
            message = self.receive()
            if message is None:
                raise EOFError(f"server closed fd 3 before starting {run_id}{self.logs()}")
            self.note(message)

    def finish(self, pending: Pending) -> Result:
        out, err = read_all([pending.stdout, pending.stderr])
        exited = self.wait_for("exited", pending.run_id)
        return Result(pending.run_id, pending.pid, out, err, exited)

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            cwd: Path = PROJECT, stdin: bytes = b"") -> Result:
        return self.finish(self.start(argv, env, cwd, stdin))

    # -- the end ---------------------------------------------------------------------

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(CAP)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"server {self.proc.pid} still running after {CAP}s") from None

    def stop(self) -> None:
        """Stops what this server started: its children still running (by the pids it
        reported), then itself."""
        for pid in self.running.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.sock.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(CAP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(CAP)

    def logs(self) -> str:
        if self.log_dir is None:
            return ""
        text = ""
        for name in ("server.out", "server.err"):
            path = self.log_dir / name
            if path.exists():
                text += f"\n--- {name}:\n{path.read_text(errors='replace')}"
        return text


class SpawnError(Exception):
    pass


def running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_all(fds: list[int]) -> tuple[str, str]:
    """Reads the run's stdout and stderr to end of file, closing them."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = set(fds)
    deadline = time.monotonic() + CAP
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("run output still open")
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)
                os.close(fd)
    out, err = (b"".join(chunks[fd]).decode() for fd in fds)
    return out, err


def cold(argv: list[str], env: dict[str, str] | None = None,
         cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    """The same command run as jobd's cold fallback runs it: the interpreter first."""
    return subprocess.run([PYTHON, *argv], cwd=cwd, env=env if env is not None else base_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CAP)
