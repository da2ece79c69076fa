import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from fakespool import FakeSpool, attempt
from testsite import tasks

from jobd.django import compat


class Run:
    """One attempt as jobd starts it: the claimed request in running/, its result
    beside it, an empty value file, and the JOBD_* variables."""

    def __init__(self, spool: FakeSpool, monkeypatch: pytest.MonkeyPatch, request_id: str = "req-1") -> None:
        self.spool = spool
        self.monkeypatch = monkeypatch
        self.request_id = request_id
        (spool.root / "values").mkdir(exist_ok=True)
        self.value_file = spool.root / "values" / "run-x"
        self.value_file.write_text("")

    def start(
        self,
        data: Any,
        attempt_number: int = 1,
        earlier: list | None = None,
        raw: str | None = None,
        with_result: bool = True,
    ) -> int:
        path = self.spool.result(
            "running",
            self.request_id,
            state="running",
            attempt=attempt_number,
            attempts=[*(earlier or []), attempt(attempt_number, None)],
            request={"data": data},
        )
        request = self.spool.root / "running" / f"{self.request_id}.json"
        if raw is not None:
            request.write_text(raw)
        if not with_result:
            path.unlink()
        for name, value in {
            "JOBD_SPOOL_FILE": str(request),
            "JOBD_SPOOL_NAME": request.name,
            "JOBD_RESULT_FILE": str(self.value_file),
            "JOBD_ATTEMPT": str(attempt_number),
            "JOBD_RUN_ID": f"run-{attempt_number}",
            "JOBD_JOB": "django_task",
        }.items():
            self.monkeypatch.setenv(name, value)
        try:
            call_command("jobd_task")
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    @property
    def value(self) -> Any:
        return json.loads(self.value_file.read_text())


@pytest.fixture
def run(spool: FakeSpool, monkeypatch: pytest.MonkeyPatch, tasks_on: Any) -> Run:
    return Run(spool, monkeypatch)


def data(module_path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"module_path": module_path, "args": list(args), "kwargs": kwargs, "queue_name": "default", "backend": "default"}


@pytest.fixture
def signals() -> Any:
    seen: list[tuple[str, Any, Any]] = []

    def started(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("started", sender, task_result.status))

    def finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("finished", sender, task_result.status))

    compat.task_started.connect(started)
    compat.task_finished.connect(finished)
    yield seen
    compat.task_started.disconnect(started)
    compat.task_finished.disconnect(finished)


def test_the_return_value_goes_to_the_result_file(run: Run, signals: list) -> None:
    assert run.start(data("testsite.tasks.add", 2, b=3)) == 0
    assert run.value == 5
    backend = type(tasks.add.get_backend())
    assert signals == [
        ("started", backend, compat.TaskResultStatus.RUNNING),
        ("finished", backend, compat.TaskResultStatus.SUCCESSFUL),
    ]


def test_a_raising_task_writes_its_error_and_exits_1(run: Run, signals: list, capsys: Any) -> None:
    assert run.start(data("testsite.tasks.boom", "no luck")) == 1
    error = run.value["error"]
    assert error["exception_class"] == "testsite.tasks.Boom"
    assert "raise Boom(message)" in error["traceback"]
    assert error["traceback"].endswith("testsite.tasks.Boom: no luck\n")
    assert signals[-1][2] == compat.TaskResultStatus.FAILED
    assert "testsite.tasks.Boom: no luck" in capsys.readouterr().err


def test_takes_context_sees_jobds_attempt(run: Run) -> None:
    earlier = [
        attempt(1, "failure", value={"error": {"exception_class": "testsite.tasks.Boom", "traceback": "T"}}),
        attempt(2, "interrupted"),
    ]
    assert run.start(data("testsite.tasks.where_am_i"), attempt_number=3, earlier=earlier) == 0
    assert run.value == {
        "attempt": 3,
        "id": "req-1",
        "workers": ["run-1", "run-2", "run-3"],
        "errors": ["testsite.tasks.Boom", "jobd.django.exceptions.AttemptFailed"],
    }


def test_the_attempt_holds_without_a_result_beside(run: Run) -> None:
    assert run.start(data("testsite.tasks.where_am_i"), attempt_number=2, with_result=False) == 0
    assert run.value["attempt"] == 2
    assert run.value["workers"] == ["attempt-1", "run-2"]


def test_async_tasks_run(run: Run) -> None:
    assert run.start(data("testsite.tasks.add_later", 1, 2)) == 0
    assert run.value == 3


@pytest.mark.parametrize(
    ("module_path", "words"),
    [
        ("testsite.tasks.plain_function", "'testsite.tasks.plain_function' is a plain function, not a Task"),
        ("testsite.tasks.NotATask", "'testsite.tasks.NotATask' is a class, not a Task"),
        ("testsite.tasks.NOT_A_TASK", "'testsite.tasks.NOT_A_TASK' is a int, not a Task"),
        ("testsite.tasks", "'testsite.tasks' is a module, not a Task"),
        ("os.system", "'os.system' is a callable, not a Task"),
        ("testsite.tasks.missing", "cannot import 'testsite.tasks.missing'"),
        ("nowhere.at_all", "cannot import 'nowhere.at_all'"),
        ("../../x", "is not a dotted Python path"),
    ],
)
def test_anything_but_a_task_is_refused_and_never_called(
    run: Run, tmp_path: Path, module_path: str, words: str
) -> None:
    marker = tmp_path / "called"
    assert run.start(data(module_path, str(marker))) == 1
    assert not marker.exists() and tasks.CALLED == []
    assert words in run.value["error"]["traceback"]


def test_a_request_that_is_not_json_is_refused(run: Run) -> None:
    assert run.start(data("testsite.tasks.add", 1), raw="task: django_task\ndata: {}\n") == 1
    assert run.value["error"]["exception_class"] == "jobd.django.runner.Unusable"
    assert "is not JSON: jobd_task runs the requests that jobd.django's backend writes" in run.value["error"]["traceback"]


def test_a_request_without_django_data_is_refused(run: Run) -> None:
    assert run.start({"something": "else"}) == 1
    assert "module_path" in run.value["error"]["traceback"]


@pytest.mark.parametrize(
    ("module_path", "words"),
    [
        ("testsite.tasks.returns_a_set", "TypeError"),
        ("testsite.tasks.returns_too_much", "more than the 1048576 jobd keeps"),
    ],
)
def test_a_value_jobd_cannot_keep_fails_the_attempt(run: Run, module_path: str, words: str) -> None:
    assert run.start(data(module_path)) == 1
    assert words in run.value["error"]["traceback"]


def test_without_jobds_variables_it_says_what_runs_it(monkeypatch: pytest.MonkeyPatch, tasks_on: Any) -> None:
    monkeypatch.delenv("JOBD_SPOOL_FILE", raising=False)
    monkeypatch.delenv("JOBD_RESULT_FILE", raising=False)
    with pytest.raises(CommandError, match="JOBD_SPOOL_FILE and JOBD_RESULT_FILE are not set: jobd runs"):
        call_command("jobd_task")
