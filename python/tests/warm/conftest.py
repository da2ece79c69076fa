import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Server, running  # noqa: E402


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts servers (not yet greeted); at the end stops each by its pid and checks that
    neither it nor any child it reported is left running."""
    servers: list[Server] = []

    def start(preload: list[str], env: dict[str, str] | None = None) -> Server:
        log_dir = tmp_path / f"server{len(servers)}"
        log_dir.mkdir()
        server = Server(preload, env=env, log_dir=log_dir)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        assert server.proc.returncode is not None
        for pid in server.reported_pids:
            assert not running(pid), f"run process {pid} left running"
