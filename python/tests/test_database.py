"""Cluster mode's table through a DB-API connection: what is sent, that nothing is
committed, and how rows read back (a fake connection here; a real PostgreSQL in
tests/cluster)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from fakedb import FakeConnection
from fakespool import FakeSpool

import jobd
from jobd.errors import JobdError, ResultNotFound, SubmitError


def test_a_job_goes_into_the_table_in_the_callers_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOBD_SPOOL_DIR", raising=False)
    connection = FakeConnection((7, True))
    run_at = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    request_id = jobd.submit(
        "report", "--month", "2026-10", data={"user": 7}, env={"LANG": "C"}, run_at=run_at,
        connection=connection,
    )
    [(sql, params)] = connection.calls
    assert "jobd.submit(" in sql
    assert params == (
        "report",
        json.dumps(["--month", "2026-10"]),
        json.dumps({"LANG": "C"}),
        json.dumps({"user": 7}),
        "2030-01-02T03:04:05.000000Z",
        None,
        request_id,
    )
    assert connection.closed_cursors == 1
    delayed = FakeConnection((8, True))
    jobd.submit("report", delay=90, id="mine", connection=delayed)
    assert delayed.calls[0][1][3:] == (None, None, 90.0, "mine")


def test_what_the_spool_refuses_is_refused_before_anything_is_sent(spool: FakeSpool) -> None:
    connection = FakeConnection((1, True))
    with pytest.raises(SubmitError, match="does not accept `data`"):
        jobd.submit("long_report", data=1, spool_dir=spool.root, connection=connection)
    with pytest.raises(SubmitError, match="unknown task"):
        jobd.submit("no_such", spool_dir=spool.root, connection=connection)
    assert connection.calls == []
    jobd.submit("long_report", "--month", "2026-10", spool_dir=spool.root, connection=connection)
    assert len(connection.calls) == 1


def test_an_id_in_use_and_a_driver_error_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBD_SPOOL_DIR", raising=False)
    with pytest.raises(SubmitError, match="already in use"):
        jobd.submit("t", id="taken", connection=FakeConnection((3, False)))
    with pytest.raises(JobdError, match="relation \"jobd.oneoffs\" does not exist"):
        jobd.submit("t", connection=FakeConnection(fail='relation "jobd.oneoffs" does not exist'))
    with pytest.raises(SubmitError, match="not valid"):
        jobd.submit("t", id="../x", connection=FakeConnection())


NOW = 1_900_000_000.0


def row(state: str, attempt: int, result: Any = None, run_at: float = NOW - 5) -> tuple[Any, ...]:
    return (
        state,
        "report",
        attempt,
        json.dumps(result) if result is not None else None,
        json.dumps({"user": 7}),
        run_at,
        NOW - 10,
        NOW - 4 if state != "queued" else None,
        NOW - 1 if state in ("done", "failed") else None,
        NOW,
    )


def test_rows_read_back_as_results() -> None:
    queued = jobd.result("r1", connection=FakeConnection(row("queued", 0)))
    assert (queued.state, queued.attempt, queued.data) == ("queued", 0, {"user": 7})
    delayed = jobd.result("r1", connection=FakeConnection(row("queued", 0, run_at=NOW + 60)))
    assert delayed.state == "delayed"
    failed_once = {
        "attempts": [{"attempt": 1, "run_id": "a-1", "outcome": "failure", "exit_code": 3}],
    }
    retrying = jobd.result(
        "r1", connection=FakeConnection(row("queued", 1, failed_once, run_at=NOW + 30))
    )
    assert retrying.state == "retrying"
    assert retrying.next_attempt_at == datetime.datetime.fromtimestamp(
        NOW + 30, datetime.timezone.utc
    )
    assert [a.exit_code for a in retrying.errors] == [3]
    running = jobd.result("r1", connection=FakeConnection(row("running", 2, failed_once)))
    assert (running.state, running.attempt, running.outcome) == ("running", 2, None)
    done_result = {
        "file": "oneoff-5.json",
        "state": "done",
        "outcome": "success",
        "exit_code": 0,
        "value": {"rows": 12},
        "attempts": [
            {"attempt": 1, "run_id": "h1-9", "outcome": "success", "exit_code": 0, "value": {"rows": 12}}
        ],
    }
    done = jobd.result("r1", connection=FakeConnection(row("done", 1, done_result)))
    assert (done.state, done.value, done.outcome, done.finished) == ("done", {"rows": 12}, "success", True)
    assert done.attempts[0].run_id == "h1-9"
    refused = {"state": "failed", "reason": "task `report` is not in this host's jobfile"}
    failed = jobd.result("r1", connection=FakeConnection(row("failed", 1, refused)))
    assert failed.state == "failed" and "not in this host's jobfile" in (failed.reason or "")


def test_a_missing_row_is_not_found_and_the_lookup_covers_forwarded_files() -> None:
    connection = FakeConnection()
    with pytest.raises(ResultNotFound, match="no one-off job 'gone'"):
        jobd.result("gone", connection=connection)
    [(sql, params)] = connection.calls
    assert params == ("gone", "gone.json")
    assert "host_id || '/'" in sql


def test_a_spool_result_forwarded_to_the_cluster_reads_as_such(
    spool: FakeSpool, tmp_path: Path
) -> None:
    (spool.root / "done" / "r9.json").write_text(json.dumps({"task": "bare", "id": "r9"}))
    (spool.root / "done" / "r9.json.result.json").write_text(
        json.dumps(
            {
                "file": "r9.json",
                "id": "r9",
                "task": "bare",
                "state": "forwarded",
                "reason": "forwarded to the cluster: one-off 4 in jobd.oneoffs, origin web1/r9.json",
            }
        )
    )
    found = jobd.result("r9", spool_dir=spool.root)
    assert found.state == "forwarded"
    assert "one-off 4" in (found.reason or "")
