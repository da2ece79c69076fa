"""A throwaway PostgreSQL per test module, as the Rust tests make theirs
(tests/integration/pgserver.rs): initdb in a temporary folder, a Unix socket there
only, fsync on; run as the `postgres` user when the tests run as root (PostgreSQL
refuses root); stopped with its own `pg_ctl stop` afterwards."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
USER = "jobd_test"


def _missing(why: str) -> None:
    if os.environ.get("JOBD_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"JOBD_REQUIRE_POSTGRES=1 but {why}")
    pytest.skip(why)


def _bin() -> Path | None:
    versions = sorted(
        (int(p.name), p / "bin")
        for p in Path("/usr/lib/postgresql").glob("*")
        if p.name.isdigit() and (p / "bin" / "initdb").exists()
    )
    if versions:
        return versions[-1][1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Postgres:
    def __init__(self, folder: Path, bin: Path) -> None:
        self.folder = folder
        self.bin = bin
        self.data = folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self.run_as:
            os.chown(folder, self.run_as.pw_uid, self.run_as.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.run_as:
            command = [
                "setpriv",
                f"--reuid={self.run_as.pw_uid}",
                f"--regid={self.run_as.pw_gid}",
                "--init-groups",
                "--",
                *command,
            ]
        subprocess.run(command, cwd=self.folder, check=True, capture_output=True)

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth-local=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{self.folder}'\n"
                "fsync = on\nmax_connections = 40\n"
            )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-o", f"-p {self.port}", "-w", "-t", "120", "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def conninfo(self) -> str:
        return f"host={self.folder} port={self.port} dbname=postgres user={USER}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bin = _bin()
    if bin is None:
        _missing("PostgreSQL's initdb was not found (apt-get install postgresql)")
    assert bin is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root, and there is no user `postgres` to run PostgreSQL as")
    folder = Path(tempfile.mkdtemp(prefix="jobd-pypg-"))
    server = Postgres(folder, bin)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        _missing("psycopg is not installed (pip install 'psycopg[binary]')")
    return psycopg


@pytest.fixture(scope="module")
def jobd_bin() -> Path:
    configured = os.environ.get("JOBD_BIN")
    if configured:
        return Path(configured)
    built = REPO / "target" / "debug" / "jobd"
    if not built.exists():
        subprocess.run(["cargo", "build", "--bin", "jobd"], cwd=REPO, check=True)
    return built
