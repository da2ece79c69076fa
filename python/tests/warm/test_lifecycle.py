"""The server's life: a preload that fails, quit and end of file, a run stopped by its
process group, runs that cannot start."""

import os
import signal
import socket
import time

import pytest

from harness import SpawnError, read_all, running


def test_a_preload_that_cannot_be_imported_is_reported_failed(start_server):
    server = start_server(["plain.broken"])
    reply = server.hello(["plain.broken"])
    assert reply["op"] == "failed"
    assert reply["error"].startswith(
        "preload plain.broken: ModuleNotFoundError: No module named 'shop_that_is_gone'\n")
    assert "Traceback (most recent call last):" in reply["error"]
    assert server.wait_exit() == 1


def test_a_preload_that_leaves_a_thread_is_reported_failed(start_server):
    server = start_server(["plain.thread_left"])
    reply = server.hello(["plain.thread_left"])
    assert reply["op"] == "failed"
    assert "left 1 thread(s) running: left-behind" in reply["error"]
    assert server.wait_exit() == 1


def test_an_unknown_protocol_version_is_reported_failed(start_server):
    server = start_server([])
    server.send({"op": "hello", "version": 2, "runtime": "test", "preload": []})
    reply = server.receive()
    assert reply == {"op": "failed",
                     "error": "jobd.warm: protocol version 2 is not supported "
                              "(jobd.warm speaks 1)"}
    assert server.wait_exit() == 1


def test_a_run_is_stopped_by_signalling_its_process_group(start_server):
    server = start_server(["django"])
    server.hello(["django"])
    pending = server.start(["manage.py", "nap", "60"])
    assert os.read(pending.stdout, 100) == b"napping\n"
    os.killpg(pending.pid, signal.SIGTERM)
    read_all([pending.stdout, pending.stderr])
    exited = server.wait_for("exited", pending.run_id)
    assert (exited.get("signal"), exited.get("code")) == (signal.SIGTERM, None)


@pytest.mark.parametrize("ending", ["quit", "eof"])
def test_after_quit_or_eof_the_server_exits_once_its_last_run_is_reported(start_server, ending):
    server = start_server(["django"])
    server.hello(["django"])
    pending = server.start(["manage.py", "nap", "1"])
    if ending == "quit":
        server.send({"op": "quit"})
        with pytest.raises(SpawnError, match="quitting"):
            server.start(["manage.py", "greet", "late"])
    else:
        server.sock.shutdown(socket.SHUT_WR)
    assert server.proc.poll() is None
    result = server.finish(pending)
    assert (result.code, result.stdout) == (0, "napping\nwoke\n")
    assert server.wait_exit() == 0


def test_quit_with_no_run_exits_at_once(start_server):
    server = start_server([])
    server.hello([])
    server.send({"op": "quit"})
    assert server.wait_exit() == 0


def test_a_run_that_cannot_start_gets_a_spawn_error(start_server, tmp_path):
    server = start_server([])
    server.hello([])
    with pytest.raises(SpawnError, match=f"cwd {tmp_path}/gone: No such file or directory"):
        server.start(["-m", "plain.bump"], cwd=tmp_path / "gone")
    r, w = os.pipe()
    server.send({"op": "run", "run_id": "two-fds", "argv": ["x"], "env": {}, "cwd": "/"},
                [r, w])
    os.close(r)
    os.close(w)
    reply = server.receive()
    assert reply == {"op": "spawn_error", "run_id": "two-fds",
                     "error": "run 'two-fds': carries 2 file descriptors, not 3 "
                              "(stdin, stdout, stderr)"}
    # The server goes on serving.
    assert server.run(["-m", "plain.bump"]).code == 0


def test_a_run_dies_with_its_server(start_server):
    """kill -9 of the server: its children get SIGKILL (their parent-death signal), so
    none outlives it and jobd's restart finds no fork behind."""
    server = start_server(["django"])
    server.hello(["django"])
    pending = server.start(["manage.py", "nap", "60"])
    assert os.read(pending.stdout, 100) == b"napping\n"
    server.proc.kill()
    server.wait_exit()
    read_all([pending.stdout, pending.stderr])  # end of file: the child is gone too
    deadline = time.monotonic() + 60
    while running(pending.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pending.pid)
    server.running.clear()

