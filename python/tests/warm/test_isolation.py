"""A run shares nothing with the server or with other runs: module state, random state,
descriptors, database connections."""

import json
import socket

from harness import PROJECT, base_env


def ready(start_server, preload, env=None):
    server = start_server(preload, env=env)
    reply = server.hello(preload)
    assert reply["op"] == "ready", reply
    return server


def test_a_module_value_changed_by_one_run_is_fresh_in_the_next(start_server):
    server = ready(start_server, ["django"])
    first, second = (json.loads(server.run(["manage.py", "state"]).stdout) for _ in range(2))
    assert first["value"] == second["value"] == 1
    assert first["random"] != second["random"]
    server_pid = server.ready["pid"]
    # The tasks module was imported once, by the server: the preload did its work.
    assert first["tasks_imported_by"] == second["tasks_imported_by"] == server_pid
    assert server_pid not in (first["pid"], second["pid"])
    # Each run leads its own process group (jobd stops a run by signalling it).
    assert first["pgid"] == first["pid"]


def test_plain_module_value_and_random_are_fresh(start_server):
    server = ready(start_server, ["plain.counter"])
    runs = [json.loads(server.run(["-m", "plain.bump"]).stdout) for _ in range(3)]
    assert [r["value"] for r in runs] == [1, 1, 1]
    assert len({r["random"] for r in runs}) == 3


def test_a_run_does_not_speak_on_the_servers_database_connection(start_server, tmp_path):
    """The preload leaves a connection open; each run must close its copy without the
    goodbye that would end the server's session, and open its own."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = str(tmp_path / "wire")
    listener.bind(address)
    listener.listen(16)
    listener.settimeout(60)
    env = {"WARM_TEST_WIRE": address, "WARM_TEST_DB": str(tmp_path / "db.sqlite3")}
    server = ready(start_server, ["django", "shop.dbwarm"], env=env)
    server_wire, _ = listener.accept()
    server_wire.settimeout(60)
    assert server_wire.recv(100) == f"hello {server.ready['pid']}\n".encode()
    for _ in range(2):
        run = server.run(["manage.py", "query"], env=base_env(**env))
        assert (run.code, run.stdout) == (0, "42\n"), run.stderr
        run_wire, _ = listener.accept()
        run_wire.settimeout(60)
        # The run's own connection, which Django closes as the command ends.
        assert read_to_eof(run_wire) == f"hello {run.pid}\nbye {run.pid}\n".encode()
        run_wire.close()
    server_wire.setblocking(False)
    try:
        data = server_wire.recv(100)
    except BlockingIOError:
        data = None
    assert data is None, f"the server's connection received {data!r}"
    server_wire.close()
    listener.close()


def read_to_eof(sock):
    data = b""
    while chunk := sock.recv(100):
        data += chunk
    return data


def collide(server, tmp_path, env):
    files = tmp_path / "files"
    files.mkdir()
    run = server.run(["-m", "plain.collide", str(files)], env=base_env(**env), cwd=PROJECT)
    assert run.code == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["sizes"] == [0] * len(seen["sizes"]), seen
    return run


def test_the_servers_signal_wakeup_pipe_is_not_written_through(start_server, tmp_path):
    """Once the child reuses the wakeup pipe's number for a file, a signal with a Python
    handler must not write its byte there. (Without Django: asyncio, which Django
    imports, resets the wakeup descriptor in forked children by itself.)"""
    server = ready(start_server, [])
    collide(server, tmp_path, {})


def test_the_preloads_log_file_is_not_written_through(start_server, tmp_path):
    """Django's LOGGING opened a file in the server; once the child reuses its number,
    a record must go to the log file (reopened), not into the run's file."""
    log = tmp_path / "shop.log"
    env = {"WARM_TEST_LOG": str(log)}
    server = ready(start_server, ["django"], env=env)
    run = collide(server, tmp_path, env)
    assert "collide logged" in run.stderr  # the console handler moved to the run's stderr
    assert log.read_text() == "collide logged\n"
