"""Django's task framework with a real jobd as its worker."""

from __future__ import annotations

import datetime
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import Jobd, wait_for
from django.db import transaction
from django.test import Client
from itsite import tasks
from itsite.views import Undone

import jobd as client
from jobd.django import compat
from jobd.django.exceptions import AttemptFailed


def finished(task: Any, result_id: str, jobd: Jobd) -> Any:
    """The TaskResult once jobd has finished with it."""

    def probe() -> Any:
        found = task.get_result(result_id)
        return found if found.is_finished else None

    return wait_for(f"{task.module_path} {result_id} to finish", probe, jobd)


def enqueue_through_the_view(name: str, *args: Any) -> str:
    answer = Client().post(f"/enqueue/{name}/", {"args": json.dumps(args)})
    assert answer.status_code == 202, answer.content
    return str(answer.json()["id"])


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_by_a_view_runs_and_succeeds(jobd: Jobd) -> None:
    result_id = enqueue_through_the_view("add", 2, 3)
    assert tasks.add.get_result(result_id).status in (
        compat.TaskResultStatus.READY,
        compat.TaskResultStatus.RUNNING,
    )
    done = finished(tasks.add, result_id, jobd)
    assert done.status == compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.errors == [] and done.attempts == 1
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert (jobd.spool / "done" / f"{result_id}.json.result.json").exists()


@pytest.mark.django_db(transaction=True)
def test_a_raising_task_fails_with_its_traceback_after_its_retries(jobd: Jobd) -> None:
    result_id = enqueue_through_the_view("fail", "no luck")
    failed = finished(tasks.fail, result_id, jobd)
    assert failed.status == compat.TaskResultStatus.FAILED
    # retries: 1 in the jobfile: two attempts, one error each, in order.
    assert [e.exception_class_path for e in failed.errors] == ["itsite.tasks.Flaky"] * 2
    assert all(e.exception_class is tasks.Flaky for e in failed.errors)
    assert all("raise Flaky(message)" in e.traceback for e in failed.errors)
    assert all(e.traceback.endswith("itsite.tasks.Flaky: no luck\n") for e in failed.errors)
    assert failed.attempts == 2


@pytest.mark.django_db(transaction=True)
def test_run_after_is_honoured(jobd: Jobd) -> None:
    run_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4)
    result = tasks.entered.using(run_after=run_after).enqueue()
    assert client.result(result.id, spool_dir=jobd.spool).state == "delayed"
    assert tasks.entered.get_result(result.id).status == compat.TaskResultStatus.READY
    done = finished(tasks.entered, result.id, jobd)
    assert done.status == compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value >= run_after.timestamp()


@pytest.mark.django_db(transaction=True)
def test_a_task_killed_with_jobd_sees_attempt_2_on_its_rerun(jobd: Jobd, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    result = tasks.outlive_jobd.enqueue(str(markers))
    pid_file = markers / "attempt-1.pid"
    wait_for("the first attempt to start", pid_file.exists, jobd)
    first_attempt = int(pid_file.read_text())
    try:
        jobd.kill9()
        jobd.start()
        done = finished(tasks.outlive_jobd, result.id, jobd)
        assert done.status == compat.TaskResultStatus.SUCCESSFUL
        assert done.return_value == 2
        assert done.attempts == 2
        # The interrupted attempt is the one error, told by jobd rather than Python.
        (error,) = done.errors
        assert error.exception_class is AttemptFailed
    finally:
        # jobd's recovery stops the first attempt; should it not, the test does.
        try:
            os.kill(first_attempt, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_hands_nothing_off_for_a_rolled_back_request(
    jobd: Jobd, settings: Any
) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "jobd.django.JobdBackend",
            "QUEUES": [],
            "OPTIONS": {"spool_dir": str(jobd.spool), "enqueue_on_commit": True},
        }
    }
    with pytest.raises(Undone):
        Client().post("/enqueue-then-fail/")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            undone = tasks.add.enqueue(1, 2)
            raise RuntimeError("roll back")
    kept = enqueue_through_the_view("add", 20, 22)
    assert finished(tasks.add, kept, jobd).return_value == 42
    # jobd has run the committed one: the others would have been seen by now.
    for folder in ("tmp", "new", "running", "done", "failed"):
        names = os.listdir(jobd.spool / folder)
        assert all(name.startswith(kept) for name in names), (folder, names)
    with pytest.raises(compat.TaskResultDoesNotExist):
        tasks.add.get_result(undone.id)


@pytest.mark.django_db(transaction=True)
def test_a_path_that_is_not_a_task_is_refused_and_never_called(jobd: Jobd, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    request_id = client.submit(
        "django_task",
        data={
            "module_path": "itsite.tasks.plain_function",
            "args": [str(marker)],
            "kwargs": {},
            "queue_name": "default",
            "backend": "default",
        },
        spool_dir=jobd.spool,
    )
    found = wait_for(
        "the forged request to fail",
        lambda: (lambda r: r if r.finished else None)(client.result(request_id, spool_dir=jobd.spool)),
        jobd,
    )
    assert found.state == "failed" and not marker.exists()
    for error in found.errors:
        assert error.value["error"]["exception_class"].endswith(("InvalidTask", "InvalidTaskError"))
        assert "is a plain function, not a Task" in error.value["error"]["traceback"]
    with pytest.raises(compat.InvalidTask, match="not a Task"):
        tasks.add.get_result(request_id)


@pytest.mark.django_db(transaction=True)
def test_an_id_that_is_a_path_is_refused(jobd: Jobd, tmp_path: Path) -> None:
    outside = tmp_path / "escaped.json"
    with pytest.raises(client.SubmitError, match="is not valid"):
        client.submit("django_task", data={}, id="../../escaped", spool_dir=jobd.spool)
    for bad in ("../../escaped", "/etc/passwd", ".hidden"):
        with pytest.raises(compat.TaskResultDoesNotExist, match="is not valid"):
            tasks.add.get_result(bad)
        with pytest.raises(ValueError):
            client.result(bad, spool_dir=jobd.spool)
    assert not outside.exists()
    assert os.listdir(jobd.spool / "new") == []
