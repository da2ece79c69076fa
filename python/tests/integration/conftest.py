"""A real jobd per test, in the test's own temporary directory, running this folder's
Django project. Each test stops exactly the processes it started, by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
ENABLED = os.environ.get("JOBD_INTEGRATION") == "1"
# Generous: a loaded 2-core machine starts Django in a second or more.
PATIENCE = 120.0

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not ENABLED:
        skip = pytest.mark.skip(
            reason="set JOBD_INTEGRATION=1 to run them (they need a jobd that writes the "
            "spool format of docs/spool-format.md)"
        )
        for item in items:
            item.add_marker(skip)


def wait_for(what: str, probe: Callable[[], T | None], jobd: Jobd | None = None) -> T:
    """Poll `probe` until it returns something, in short steps, up to PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    step = 0.05
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if jobd is not None:
            jobd.check_alive()
        if time.monotonic() > deadline:
            log = jobd.log() if jobd else ""
            raise AssertionError(f"waited {PATIENCE:g}s for {what}\n--- jobd's log:\n{log}")
        time.sleep(step)
        step = min(step * 1.5, 0.5)


@pytest.fixture(scope="session")
def jobd_bin() -> Path:
    configured = os.environ.get("JOBD_BIN")
    if configured:
        return Path(configured)
    built = REPO / "target" / "debug" / "jobd"
    if not built.exists():
        subprocess.run(["cargo", "build", "--bin", "jobd"], cwd=REPO, check=True)
    return built


JOBFILE = """\
shutdown_grace: 5s
state_dir: {root}/state
socket: {root}/jobd.sock
defaults:
  workdir: {here}
spool:
  dir: {root}/spool
  workers: 2
tasks:
  django_task:
    command: [{python}, manage.py, jobd_task]
    accept: {{data: true}}
    timeout: 5m
    retries: 1
    retry_delay: 1s
"""


class Jobd:
    """One jobd on a jobfile of its own; `start()` again after a kill -9 reuses its
    state and spool, as a restart on a server does."""

    def __init__(self, binary: Path, root: Path, extra: str = "") -> None:
        """`extra`: more of the jobfile (runtimes, jobs), after its tasks."""
        self.binary = binary
        self.root = root
        self.spool = root / "spool"
        self.jobfile = root / "jobd.yaml"
        text = JOBFILE.format(root=root, here=HERE, python=sys.executable)
        self.jobfile.write_text(text + extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        log = self.root / f"jobd-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
            "DJANGO_SETTINGS_MODULE": "itsite.settings",
            "JOBD_SPOOL_DIR": str(self.spool),
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "-c", str(self.jobfile)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        # jobd writes tasks.json once its spool is ready.
        wait_for("jobd to write spool/tasks.json", lambda: (self.spool / "tasks.json").exists(), self)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def jobctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`jobctl ARGS` on this jobd (the jobctl beside its binary)."""
        return subprocess.run(
            [str(self.binary.with_name("jobctl")), "-c", str(self.jobfile), *args],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"jobd exited with {self.process.returncode}\n--- its log:\n{self.log()}"
            )

    def kill9(self) -> None:
        """SIGKILL to exactly this jobd, as a crash: its running children stay."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=PATIENCE)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=PATIENCE)
        self.process = None

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture
def jobd(jobd_bin: Path, tmp_path: Path, settings: Any) -> Iterator[Jobd]:
    daemon = Jobd(jobd_bin, tmp_path)
    daemon.start()
    settings.TASKS = {
        "default": {
            "BACKEND": "jobd.django.JobdBackend",
            "QUEUES": [],
            "OPTIONS": {"spool_dir": str(daemon.spool)},
        }
    }
    yield daemon
    daemon.stop()
