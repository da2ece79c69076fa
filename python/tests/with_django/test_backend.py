import datetime
import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from fakespool import FakeSpool, attempt
from testsite import tasks

import jobd
from jobd.django import compat
from jobd.django.exceptions import AttemptFailed, RequestRefused

UTC = datetime.timezone.utc


def only_request(spool: FakeSpool) -> dict[str, Any]:
    (name,) = spool.files("new")
    return json.loads((spool.root / "new" / name).read_text())


def test_enqueue_hands_a_request_with_the_task_in_its_data(spool: FakeSpool, tasks_on: Any) -> None:
    seen = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append((sender, task_result.id))

    compat.task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(2, b=3)
    finally:
        compat.task_enqueued.disconnect(receiver)
    assert spool.files("new") == [f"{result.id}.json"]
    assert only_request(spool) == {
        "task": "django_task",
        "id": result.id,
        "data": {
            "module_path": "testsite.tasks.add",
            "args": [2],
            "kwargs": {"b": 3},
            "queue_name": "default",
            "backend": "default",
        },
    }
    assert result.status == compat.TaskResultStatus.READY
    assert result.enqueued_at is not None and result.errors == [] and result.worker_ids == []
    assert seen == [(type(tasks.add.get_backend()), result.id)]
    assert tasks.add.get_backend().supports_defer and tasks.add.get_backend().supports_get_result


def test_run_after_becomes_run_at_in_utc(spool: FakeSpool, tasks_on: Any) -> None:
    amsterdam = datetime.timezone(datetime.timedelta(hours=1))
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=amsterdam)
    tasks.add.using(run_after=at).enqueue(1)
    assert only_request(spool)["run_at"] == "2030-01-02T02:04:05.000000Z"


def test_a_naive_run_after_is_refused_even_without_use_tz(settings: Any, tasks_on: Any) -> None:
    settings.USE_TZ = False
    with pytest.raises(compat.InvalidTask, match="run_after must be an aware datetime: jobd needs"):
        tasks.add.using(run_after=datetime.datetime(2030, 1, 1))


def test_priority_is_not_supported(tasks_on: Any) -> None:
    with pytest.raises(compat.InvalidTask, match="priority"):
        tasks.add.using(priority=5)


def test_a_task_must_be_a_module_level_function(tasks_on: Any) -> None:
    def local() -> None:
        pass

    with pytest.raises(compat.InvalidTask, match="module level"):
        tasks.add.using().__class__(func=local, backend="default")


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((datetime.date(2026, 1, 1),), {}, "args[0] is a datetime.date, which does not survive a JSON round trip"),
        (((1, 2),), {}, "args[0] is a tuple, which does not survive a JSON round trip: it would come back as a list"),
        ((), {"b": {1: "x"}}, "kwargs['b'] has the key 1: JSON keys are strings"),
        ((float("nan"),), {}, "args[0] is nan, which JSON cannot hold"),
        (([{"deep": {1, 2}}],), {}, "args[0][0]['deep'] is a set"),
    ],
)
def test_arguments_must_survive_a_json_round_trip(
    spool: FakeSpool, tasks_on: Any, args: tuple, kwargs: dict, words: str
) -> None:
    with pytest.raises(TypeError) as raised:
        tasks.add.enqueue(*args, **kwargs)
    assert words in str(raised.value)
    assert "cannot enqueue testsite.tasks.add" in str(raised.value)
    assert spool.files("new") == []


def test_each_queue_has_its_jobd_task(spool: FakeSpool, tasks_on: Any) -> None:
    tasks_on(queues={"default": "django_task", "reports": "django_reports"})
    tasks.report.enqueue("2026-10")
    assert only_request(spool)["task"] == "django_reports"
    with pytest.raises(compat.InvalidTask, match="Queue 'other' is not valid"):
        tasks.add.using(queue_name="other")


@pytest.mark.parametrize(
    ("options", "params", "words"),
    [
        ({"tsak": "x"}, {}, "has 'tsak': JobdBackend reads task, queues, spool_dir, enqueue_on_commit, transport, database"),
        ({"task": "a", "queues": {"default": "a"}}, {}, "has both 'task'"),
        ({"queues": {}}, {}, "maps queue names to jobd task names"),
        ({"queues": {"default": "a"}}, {"QUEUES": ["default", "x"]}, "leave QUEUES out"),
        ({"transport": "rabbit"}, {}, "use 'spool' or 'database'"),
        ({"transport": "database", "enqueue_on_commit": True}, {}, "leave enqueue_on_commit out"),
    ],
)
def test_bad_options_are_named(settings: Any, options: dict, params: dict, words: str) -> None:
    settings.TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend", "OPTIONS": options, **params}}
    with pytest.raises(ImproperlyConfigured, match="TASKS") as raised:
        tasks.add.get_backend()
    assert words in str(raised.value)


def test_what_jobd_would_refuse_is_refused_at_enqueue(spool: FakeSpool, tasks_on: Any) -> None:
    tasks_on(task="no_data")
    with pytest.raises(jobd.SubmitError, match="does not accept `data`"):
        tasks.add.enqueue(1)
    tasks_on(task="django_tsak")
    with pytest.raises(jobd.SubmitError, match="did you mean `django_task`"):
        tasks.add.enqueue(1)
    assert spool.files("new") == []


def test_no_layout_is_said_at_enqueue(settings: Any, tmp_path: Any) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "jobd.django.JobdBackend", "OPTIONS": {"spool_dir": str(tmp_path / "x")}}
    }
    with pytest.raises(jobd.SpoolMissing, match="start jobd once"):
        tasks.add.enqueue(1)
    assert not (tmp_path / "x").exists()


def test_the_spool_dir_setting_is_the_default(settings: Any, spool: FakeSpool) -> None:
    settings.TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend"}}
    settings.JOBD_SPOOL_DIR = spool.root
    result = tasks.add.enqueue(1)
    assert spool.files("new") == [f"{result.id}.json"]


def test_async_tasks_are_enqueued_too(spool: FakeSpool, tasks_on: Any) -> None:
    tasks.add_later.enqueue(1, 2)
    assert only_request(spool)["data"]["module_path"] == "testsite.tasks.add_later"


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_hands_off_at_commit_and_never_on_rollback(
    spool: FakeSpool, tasks_on: Any
) -> None:
    tasks_on(enqueue_on_commit=True)

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        with transaction.atomic():
            undone = tasks.add.enqueue(1)
            raise Undo
    assert undone.enqueued_at is None
    assert spool.files("new") == [] and spool.files("tmp") == []
    with transaction.atomic():
        kept = tasks.add.enqueue(2)
        assert spool.files("new") == []
    assert spool.files("new") == [f"{kept.id}.json"]
    assert kept.enqueued_at is not None
    # Outside a transaction, at once.
    now = tasks.add.enqueue(3)
    assert f"{now.id}.json" in spool.files("new")


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_still_refuses_at_once(spool: FakeSpool, tasks_on: Any) -> None:
    tasks_on(enqueue_on_commit=True, task="no_data")
    with transaction.atomic():
        with pytest.raises(jobd.SubmitError):
            tasks.add.enqueue(1)


def data(module_path: str = "testsite.tasks.add", **overrides: Any) -> dict[str, Any]:
    return {
        "module_path": module_path,
        "args": [2],
        "kwargs": {"b": 3},
        "queue_name": "default",
        "backend": "default",
        **overrides,
    }


def test_queued_delayed_and_retrying_are_ready(spool: FakeSpool, tasks_on: Any) -> None:
    queued = tasks.add.enqueue(2, b=3)
    later = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    delayed = tasks.add.using(run_after=later).enqueue(2)
    spool.result(
        "running",
        "again",
        state="retrying",
        attempt=1,
        attempts=[attempt(1, "failure", value={"error": {"exception_class": "testsite.tasks.Boom", "traceback": "T1"}})],
        request={"data": data()},
    )
    for result_id in (queued.id, delayed.id, "again"):
        got = tasks.add.get_result(result_id)
        assert got.status == compat.TaskResultStatus.READY
        assert not got.is_finished
    got = tasks.add.get_result(queued.id)
    assert (got.args, got.kwargs, got.enqueued_at is not None) == ([2], {"b": 3}, True)
    retrying = tasks.add.get_result("again")
    assert [(e.exception_class_path, e.traceback) for e in retrying.errors] == [("testsite.tasks.Boom", "T1")]
    assert retrying.errors[0].exception_class is tasks.Boom
    assert retrying.attempts == 1


def test_running(spool: FakeSpool, tasks_on: Any) -> None:
    spool.result(
        "running",
        "busy",
        state="running",
        attempt=2,
        attempts=[attempt(1, "interrupted"), attempt(2, None)],
        request={"data": data()},
    )
    got = tasks.add.get_result("busy")
    assert got.status == compat.TaskResultStatus.RUNNING
    assert got.worker_ids == ["run-1", "run-2"]
    assert got.started_at == datetime.datetime(2026, 11, 27, 17, 31, tzinfo=UTC)
    assert got.last_attempted_at == datetime.datetime(2026, 11, 27, 17, 32, tzinfo=UTC)
    assert got.finished_at is None
    (error,) = got.errors
    assert error.exception_class is AttemptFailed
    assert "attempt 1 (run run-1) was interrupted: jobd died while it ran" in error.traceback


def test_done_is_successful_with_the_return_value(spool: FakeSpool, tasks_on: Any) -> None:
    spool.result(
        "done",
        "fine",
        state="done",
        attempt=1,
        outcome="success",
        value=5,
        ended_at="2026-11-27T17:31:01.500000Z",
        attempts=[attempt(1, "success", value=5)],
        request={"data": data()},
    )
    got = tasks.add.get_result("fine")
    assert got.status == compat.TaskResultStatus.SUCCESSFUL
    assert got.return_value == 5
    assert got.finished_at == datetime.datetime(2026, 11, 27, 17, 31, 1, 500000, tzinfo=UTC)
    assert got.errors == []
    assert got.task.func is tasks.add.func and got.backend == "default"


def test_failed_holds_one_error_per_failed_attempt_in_order(spool: FakeSpool, tasks_on: Any) -> None:
    spool.result(
        "failed",
        "broke",
        state="failed",
        attempt=3,
        outcome="failure",
        attempts=[
            attempt(1, "failure", value={"error": {"exception_class": "testsite.tasks.Boom", "traceback": "first"}}),
            attempt(2, "timeout", signal="SIGTERM", output=["working...", "still working..."]),
            attempt(3, "killed", signal="SIGKILL"),
        ],
        request={"data": data("testsite.tasks.boom", args=["x"], kwargs={})},
    )
    got = tasks.boom.get_result("broke")
    assert got.status == compat.TaskResultStatus.FAILED
    assert [e.exception_class_path for e in got.errors] == [
        "testsite.tasks.Boom",
        "jobd.django.exceptions.AttemptFailed",
        "jobd.django.exceptions.AttemptFailed",
    ]
    assert got.errors[0].traceback == "first"
    assert got.errors[1].traceback == (
        "attempt 2 (run run-2) timed out\nits last output lines:\nworking...\nstill working..."
    )
    assert got.errors[2].traceback == "attempt 3 (run run-3) was killed by SIGKILL"
    with pytest.raises(ValueError, match="Task failed"):
        got.return_value


def test_a_refused_request_fails_with_jobds_reason(spool: FakeSpool, tasks_on: Any) -> None:
    spool.result("failed", "nope", state="failed", reason="task `django_task` is no longer in the jobfile", request={"data": data()})
    got = tasks.add.get_result("nope")
    assert got.status == compat.TaskResultStatus.FAILED
    (error,) = got.errors
    assert error.exception_class is RequestRefused
    assert error.traceback == "task `django_task` is no longer in the jobfile"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", ".x", "a/b", "a\0b"])
def test_an_id_that_is_a_path_does_not_exist(tasks_on: Any, bad: str) -> None:
    with pytest.raises(compat.TaskResultDoesNotExist, match="is not valid"):
        tasks.add.get_result(bad)


def test_unknown_and_foreign_ids_do_not_exist(spool: FakeSpool, tasks_on: Any) -> None:
    with pytest.raises(compat.TaskResultDoesNotExist, match="no request 'ghost'"):
        tasks.add.get_result("ghost")
    jobd.submit("django_task", data={"not": "django"}, id="foreign", spool_dir=spool.root)
    with pytest.raises(compat.TaskResultDoesNotExist, match="not a Django task's"):
        tasks.add.get_result("foreign")


def test_a_result_of_another_task_is_a_mismatch(spool: FakeSpool, tasks_on: Any) -> None:
    result = tasks.add.enqueue(1)
    with pytest.raises(Exception, match="Task does not match"):
        tasks.boom.get_result(result.id)


def test_refresh(spool: FakeSpool, tasks_on: Any) -> None:
    result = tasks.add.enqueue(2, b=3)
    (spool.root / "new" / f"{result.id}.json").rename(spool.root / "done" / f"{result.id}.json")
    spool.result("done", result.id, state="done", outcome="success", value=5, request={"data": data()})
    result.refresh()
    assert result.status == compat.TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_system_checks(spool: FakeSpool, tasks_on: Any, tmp_path: Any, settings: Any) -> None:
    backend = tasks.add.get_backend()
    assert backend.check() == []
    tasks_on(queues={"default": "django_task", "reports": "missing", "plain": "no_data"})
    found = {m.id: m.msg for m in tasks.add.get_backend().check()}
    assert found == {
        "jobd.E001": f"jobd has no task `missing` (by {spool.root / 'tasks.json'})",
        "jobd.E002": f"jobd's task `no_data` does not accept data (by {spool.root / 'tasks.json'})",
    }
    settings.TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend", "OPTIONS": {"spool_dir": str(tmp_path / "none")}}}
    assert tasks.add.get_backend().check() == []
    (spool.root / "tasks.json").write_text("{")
    tasks_on()
    assert [m.id for m in tasks.add.get_backend().check()] == ["jobd.W001"]


def test_the_database_transport_inserts_on_djangos_connection_and_reads_the_row(
    spool: FakeSpool, tasks_on: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakedb import FakeConnection

    from jobd.django.backend import JobdBackend

    tasks_on(transport="database")
    connection = FakeConnection((9, True))
    monkeypatch.setattr(JobdBackend, "_connection", lambda self: connection)
    result = tasks.add.enqueue(2, b=3)
    assert spool.files("new") == []
    [(sql, params)] = connection.calls
    assert "jobd.submit(" in sql
    assert params[0] == "django_task" and params[-1] == result.id
    assert json.loads(params[3])["module_path"] == "testsite.tasks.add"
    data = json.loads(params[3])
    done = {
        "state": "done",
        "outcome": "success",
        "exit_code": 0,
        "value": 5,
        "attempts": [{"attempt": 1, "run_id": "h2-4", "outcome": "success", "value": 5}],
    }
    now = 1_900_000_000.0
    connection.rows = [
        ("done", "django_task", 1, json.dumps(done), json.dumps(data), now - 3, now - 5,
         now - 2, now - 1, now)
    ]
    found = tasks.add.get_backend().get_result(result.id)
    assert found.status == compat.TaskResultStatus.SUCCESSFUL
    assert found.return_value == 5
    assert found.worker_ids == ["h2-4"]
