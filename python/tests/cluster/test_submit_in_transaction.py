"""`jobd.submit(..., connection=...)` on a real PostgreSQL with psycopg: the job
exists if and only if the caller's transaction commits, the hosts hear of it only
then, and a real jobd in cluster mode runs it and records a result that
`jobd.result(id, connection=...)` reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jobd

JOBFILE = """\
cluster:
  database_url: "{conninfo}"
  host_id: py-host
  lease: 10s
state_dir: {root}/state
socket: {root}/jobd.sock
spool:
  dir: {root}/spool
tasks:
  square:
    command: [{python}, -c, "{program}"]
    accept:
      data: true
"""

# Reads its request's data, writes the square of `n` as its value.
PROGRAM = (
    "import json, os; "
    "n = json.load(open(os.environ['JOBD_SPOOL_FILE']))['data']['n']; "
    "open(os.environ['JOBD_RESULT_FILE'], 'w').write(json.dumps({'square': n * n}))"
)


def wait_for(what: str, probe: Any, log: Path | None = None) -> Any:
    deadline = time.monotonic() + 60
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            shown = log.read_text() if log else ""
            raise AssertionError(f"waited 60s for {what}\n{shown}")
        time.sleep(0.1)


def test_a_job_exists_if_and_only_if_the_transaction_commits(
    postgres: Any, psycopg: Any, jobd_bin: Path, tmp_path: Path
) -> None:
    jobfile = tmp_path / "jobd.yaml"
    jobfile.write_text(
        JOBFILE.format(
            conninfo=postgres.conninfo, root=tmp_path, python=sys.executable, program=PROGRAM
        )
    )
    subprocess.run([str(jobd_bin), "migrate", "-c", str(jobfile)], check=True)

    listener = psycopg.connect(postgres.conninfo, autocommit=True)
    listener.execute("LISTEN jobd_oneoff")
    app = psycopg.connect(postgres.conninfo)
    # Results are read outside the application's transactions.
    reader = psycopg.connect(postgres.conninfo, autocommit=True)

    # Rolled back: no job, and no host heard of one.
    with app.transaction(force_rollback=True):
        undone = jobd.submit("square", data={"n": 3}, connection=app)
    assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
    try:
        jobd.result(undone, connection=reader)
        raise AssertionError("a rolled back job exists")
    except jobd.ResultNotFound:
        pass

    # Committed: the hosts are told only at the commit.
    with app.transaction():
        request_id = jobd.submit("square", data={"n": 7}, connection=app)
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
    assert len(list(listener.notifies(timeout=10, stop_after=1))) == 1
    assert jobd.result(request_id, connection=reader).state == "queued"

    # A jobd in cluster mode runs it; its result is the spool's shape, in the row.
    log = tmp_path / "jobd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(jobd_bin), "-c", str(jobfile)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "JOBD_LOG": "info"},
        )
    try:
        done = wait_for(
            "the job to end",
            lambda: (r := jobd.result(request_id, connection=reader)).finished and r,
            log,
        )
        assert done.state == "done", done
        assert done.value == {"square": 49}
        assert done.data == {"n": 7}
        assert [a.outcome for a in done.attempts] == ["success"]
        assert done.attempts[0].run_id
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    for connection in (listener, app, reader):
        connection.close()
