import datetime
import json
import os

import pytest
from fakespool import FakeSpool, attempt

import jobd
from jobd import results as result_module

UTC = datetime.timezone.utc


def test_a_submitted_request_is_queued(spool: FakeSpool) -> None:
    request_id = jobd.submit("django_task", data={"n": 1}, spool_dir=spool.root)
    found = jobd.result(request_id, spool_dir=spool.root)
    assert found.state == "queued"
    assert found.id == request_id and found.task == "django_task"
    assert found.data == {"n": 1}
    assert found.attempt == 0 and found.attempts == () and found.errors == ()
    assert found.received_at is not None
    assert abs(found.received_at - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=1)
    assert found.scheduled_at == found.received_at


def test_a_request_waiting_for_its_time_is_delayed(spool: FakeSpool) -> None:
    later = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    a = jobd.submit("bare", run_at=later, spool_dir=spool.root)
    b = jobd.submit("bare", delay=datetime.timedelta(minutes=5), spool_dir=spool.root)
    c = jobd.submit("bare", run_at=later - datetime.timedelta(hours=2), spool_dir=spool.root)
    d = jobd.submit("bare", delay=0, spool_dir=spool.root)
    found = jobd.result(a, spool_dir=spool.root)
    assert found.state == "delayed"
    assert found.scheduled_at == later.replace(microsecond=later.microsecond)
    delayed = jobd.result(b, spool_dir=spool.root)
    assert delayed.state == "delayed"
    assert delayed.received_at is not None and delayed.scheduled_at is not None
    assert delayed.scheduled_at - delayed.received_at == datetime.timedelta(minutes=5)
    assert jobd.result(c, spool_dir=spool.root).state == "queued"
    assert jobd.result(d, spool_dir=spool.root).state == "queued"


def test_a_request_from_another_client_with_a_duration_text(spool: FakeSpool) -> None:
    spool.request("new", "other", delay="1h30m")
    found = jobd.result("other", spool_dir=spool.root)
    assert found.state == "delayed"
    assert found.scheduled_at is not None and found.received_at is not None
    assert found.scheduled_at - found.received_at == datetime.timedelta(hours=1, minutes=30)


def test_a_file_in_new_that_is_not_json_is_still_queued(spool: FakeSpool) -> None:
    (spool.root / "new" / "yaml.json").write_text("task: bare\n")
    found = jobd.result("yaml", spool_dir=spool.root)
    assert (found.state, found.task, found.data) == ("queued", None, None)


def test_running(spool: FakeSpool) -> None:
    spool.result(
        "running",
        "r1",
        state="running",
        attempt=1,
        started_at="2026-11-27T17:31:00.000000Z",
        attempts=[attempt(1, None)],
        request={"data": {"module_path": "x.y"}},
    )
    found = jobd.result("r1", spool_dir=spool.root)
    assert found.state == "running"
    assert found.attempt == 1
    assert found.started_at == datetime.datetime(2026, 11, 27, 17, 31, tzinfo=UTC)
    assert found.received_at == datetime.datetime(2026, 11, 27, 17, 30, 5, tzinfo=UTC)
    assert found.data == {"module_path": "x.y"}
    assert found.errors == () and not found.finished


def test_retrying_keeps_the_errors_so_far(spool: FakeSpool) -> None:
    spool.result(
        "running",
        "r2",
        state="retrying",
        attempt=1,
        outcome="failure",
        exit_code=1,
        next_attempt_at="2026-11-27T17:32:00Z",
        attempts=[attempt(1, "failure", value={"error": {"exception_class": "x.E", "traceback": "t"}})],
    )
    found = jobd.result("r2", spool_dir=spool.root)
    assert found.state == "retrying"
    assert found.next_attempt_at == datetime.datetime(2026, 11, 27, 17, 32, tzinfo=UTC)
    assert [e.attempt for e in found.errors] == [1]
    assert found.errors[0].value["error"]["exception_class"] == "x.E"


def test_done_with_its_value(spool: FakeSpool) -> None:
    spool.result(
        "done",
        "d1",
        state="done",
        attempt=2,
        outcome="success",
        exit_code=0,
        value={"rows": 12},
        ended_at="2026-11-27T17:32:01.500000+01:00",
        attempts=[attempt(1, "timeout", signal="SIGTERM"), attempt(2, "success", value={"rows": 12})],
    )
    found = jobd.result("d1", spool_dir=spool.root)
    assert found.state == "done" and found.finished
    assert found.value == {"rows": 12}
    assert found.ended_at == datetime.datetime(2026, 11, 27, 16, 32, 1, 500000, tzinfo=UTC)
    assert [(e.attempt, e.outcome, e.signal) for e in found.errors] == [(1, "timeout", "SIGTERM")]
    assert [a.run_id for a in found.attempts] == ["run-1", "run-2"]


def test_failed_and_refused(spool: FakeSpool) -> None:
    spool.result(
        "failed",
        "f1",
        state="failed",
        attempt=2,
        outcome="failure",
        exit_code=1,
        output=["Traceback", "ValueError: no"],
        attempts=[attempt(1, "failure"), attempt(2, "failure")],
    )
    spool.result("failed", "f2", state="failed", reason="unknown task `nope`", task=None)
    failed = jobd.result("f1", spool_dir=spool.root)
    assert failed.state == "failed" and failed.exit_code == 1
    assert failed.output == ("Traceback", "ValueError: no")
    assert len(failed.errors) == 2
    refused = jobd.result("f2", spool_dir=spool.root)
    assert (refused.state, refused.reason, refused.attempts) == ("failed", "unknown task `nope`", ())


def test_a_result_without_its_request_file_beside_it(spool: FakeSpool) -> None:
    spool.result("done", "lonely", state="done", outcome="success")
    (spool.root / "done" / "lonely.json").unlink()
    found = jobd.result("lonely", spool_dir=spool.root)
    assert found.state == "done" and found.data is None


def test_a_request_filed_on_between_two_reads_is_found_where_it_went(spool: FakeSpool) -> None:
    # jobd writes the result in done/ first, then moves the file there and removes
    # running/'s result: a reader can find running/'s result and no file beside it.
    spool.result(
        "running", "moving", state="running", attempt=1, attempts=[attempt(1, None)]
    )
    (spool.root / "running" / "moving.json").unlink()
    spool.result(
        "done", "moving", state="done", outcome="success",
        request={"data": {"module_path": "x.y"}},
    )
    found = jobd.result("moving", spool_dir=spool.root)
    assert found.state == "done"
    assert found.data == {"module_path": "x.y"}


def test_an_unknown_id(spool: FakeSpool) -> None:
    with pytest.raises(jobd.ResultNotFound, match="no request 'nope'") as raised:
        jobd.result("nope", spool_dir=spool.root)
    assert isinstance(raised.value, LookupError)


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "/etc/passwd", "..", ".", ".hidden", "a/b", "a\0b", "", "-x", "x" * 129, "ü"]
)
def test_an_id_that_could_be_a_path_reads_nothing(
    spool: FakeSpool, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    def nothing(*args: object) -> None:
        raise AssertionError("read the spool for an id that is not one")

    monkeypatch.setattr(result_module, "locate", nothing)
    monkeypatch.setattr(result_module, "snapshot", nothing)
    with pytest.raises(ValueError, match="is not valid"):
        jobd.result(bad, spool_dir=spool.root)


def test_links_and_fifos_in_the_spool_are_not_followed(spool: FakeSpool, tmp_path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"task": "bare", "data": "secret"}))
    os.symlink(secret, spool.root / "new" / "link.json")
    os.mkfifo(spool.root / "new" / "fifo.json")
    found = jobd.result("link", spool_dir=spool.root)
    assert found.state == "queued" and found.data is None
    assert jobd.result("fifo", spool_dir=spool.root).data is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "is not a result this package reads"),
        ('{"state": "exploded"}', "state 'exploded' is none of running, retrying, done, failed"),
        ('{"state": "done", "attempt": "one"}', "`attempt` is not a whole number"),
        ('{"state": "done", "started_at": "yesterday"}', "is not an RFC 3339 time"),
        ('{"state": "done", "output": [1]}', "`output` is not a list of strings"),
    ],
)
def test_a_damaged_result_is_named(spool: FakeSpool, content: str, words: str) -> None:
    spool.request("done", "bad")
    (spool.root / "done" / "bad.json.result.json").write_text(content)
    with pytest.raises(jobd.SpoolError, match="bad.json.result.json") as raised:
        jobd.result("bad", spool_dir=spool.root)
    assert words in str(raised.value)


def test_a_missing_layout(tmp_path) -> None:
    with pytest.raises(jobd.SpoolMissing):
        jobd.result("x", spool_dir=tmp_path / "nowhere")


def test_a_request_claimed_an_instant_ago_is_running(spool: FakeSpool) -> None:
    spool.request("running", "claimed", data={"n": 1})
    found = jobd.result("claimed", spool_dir=spool.root)
    assert (found.state, found.attempt, found.data, found.received_at) == ("running", 0, {"n": 1}, None)


def test_an_unreadable_result_says_who_may_read_it(spool: FakeSpool, monkeypatch: pytest.MonkeyPatch) -> None:
    spool.result("done", "secret", state="done")
    real_open = os.open

    def refused(path: os.PathLike[str], *args: int) -> int:
        if str(path).endswith(".result.json"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args)

    # As root the mode would not stop the read: refuse it the way the kernel does.
    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(jobd.SpoolError, match="Permission denied: this user must be in the spool's group"):
        jobd.result("secret", spool_dir=spool.root)
