import datetime
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakejobd import STATUS, FakeJobd
from fakespool import FakeSpool, attempt

import jobd
from jobd import control
from jobd.overview import overview


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "jobd.sock"


@pytest.fixture
def fake(socket_path: Path) -> Iterator[FakeJobd]:
    server = FakeJobd(socket_path, STATUS)
    yield server
    server.close()


def test_status_comes_from_the_socket(fake: FakeJobd, socket_path: Path, spool: FakeSpool) -> None:
    seen = overview(socket_path, spool.root)
    assert fake.requests == [{"version": 1, "command": "status"}]
    assert seen.source == (
        f"scheduled jobs from jobd's control socket {socket_path}; "
        f"one-off jobs from the spool folders in {spool.root}"
    )
    assert seen.daemon is not None and seen.daemon["pid"] == 4242
    assert seen.jobs is not None
    # Overdue first, then failing, each in jobd's own order.
    assert [j.name for j in seen.jobs] == ["monthly_report", "import_daily", "send_mail", "clear_sessions"]
    first = seen.jobs[0]
    assert first.overdue and not first.failing
    assert seen.jobs[1].failing and seen.jobs[1].last_outcome == "failed"
    assert seen.jobs[2].running == 1
    assert seen.jobs[2].next == datetime.datetime(2026, 11, 27, 17, 0, 5, tzinfo=datetime.timezone.utc)
    assert seen.counts is not None and seen.counts["failed_recently"] == 4
    assert seen.problems == ("cannot write the history file: No space left on device",)


def test_a_failed_reload_is_the_first_problem(socket_path: Path, spool: FakeSpool) -> None:
    server = FakeJobd(socket_path, {**STATUS, "reload_error": "jobd.yaml line 3: unknown key"})
    try:
        seen = overview(socket_path, spool.root)
    finally:
        server.close()
    assert seen.problems[0].startswith("the last reload failed")


def test_without_jobd_the_spool_folders_are_read_and_it_says_so(socket_path: Path, spool: FakeSpool) -> None:
    jobd.submit("bare", id="waiting", spool_dir=spool.root)
    spool.result("running", "busy", state="running", attempt=1, attempts=[attempt(1, None)])
    spool.result("running", "again", state="retrying", attempt=1, attempts=[attempt(1, "failure")])
    spool.result("done", "ok", state="done", outcome="success", value=3)
    spool.result("failed", "refused", state="failed", reason="unknown task `x`")
    seen = overview(socket_path, spool.root)
    assert seen.source == (
        f"no answer from jobd: jobd is not running (no socket at {socket_path}); "
        f"scheduled jobs unknown; one-off jobs from the spool folders in {spool.root}"
    )
    assert seen.jobs is None and seen.counts is None and seen.daemon is None
    folders = {f.name: f for f in seen.folders}
    assert [f.name for f in seen.folders] == ["new", "running", "done", "failed"]
    assert [r.id for r in folders["new"].recent] == ["waiting"]
    assert {(r.id, r.state) for r in folders["running"].recent} == {("busy", "running"), ("again", "retrying")}
    assert folders["failed"].recent[0].reason == "unknown task `x`"
    assert folders["done"].count == 1


def test_a_refusing_socket_falls_back_too(socket_path: Path, spool: FakeSpool) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.close()  # the file stays, nothing listens: connection refused
    seen = overview(socket_path, spool.root)
    assert "nothing listens on" in seen.source and seen.jobs is None


def test_recent_is_bounded_and_newest_first(spool: FakeSpool) -> None:
    for n in range(5):
        path = spool.result("done", f"d{n}", state="done", outcome="success")
        stamp = 1_700_000_000 + n
        os.utime(path, (stamp, stamp))
    seen = overview(None, spool.root, recent=2)
    done = next(f for f in seen.folders if f.name == "done")
    assert done.count == 5 and [r.id for r in done.recent] == ["d4", "d3"]
    assert seen.source.startswith("no control socket configured (JOBD_SOCKET)")


def test_no_spool_is_said_too(socket_path: Path, fake: FakeJobd, tmp_path: Path) -> None:
    seen = overview(socket_path, tmp_path / "nowhere")
    assert seen.folders == () and seen.spool_error is not None
    assert "start jobd once" in seen.spool_error
    assert seen.jobs is not None


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"not json\n", "is not JSON"),
        (json.dumps({"version": 2, "kind": "status"}).encode() + b"\n", "another protocol version (2)"),
        (json.dumps({"version": 1, "kind": "error", "message": "not allowed"}).encode() + b"\n", "jobd refused `status`: not allowed"),
        (b"", "closed"),
    ],
)
def test_control_errors_say_what_and_where(socket_path: Path, answer: bytes, words: str) -> None:
    server = FakeJobd(socket_path, answer)
    try:
        with pytest.raises(control.ControlError) as raised:
            control.request(socket_path, "status")
    finally:
        server.close()
    assert words in str(raised.value)
