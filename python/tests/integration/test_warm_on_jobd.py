"""Warm runtimes with a real Django project: a warm `manage.py` job behaves as a cold
one (output, environment, JOBD_* variables, exit codes, timeouts, on_failure), and
Django task backend tasks run warm too."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Jobd, wait_for
from django.test import Client
from itsite import tasks

from jobd.django import compat

RUNTIME = f"""
runtimes:
  django:
    command: [{sys.executable}, -m, jobd.warm]
    env: {{DJANGO_SETTINGS_MODULE: itsite.settings, GREETING: runtime}}
    preload: [django]
jobs:
  warm:
    every: 1h
    runtime: django
    command: [manage.py, show_run]
    env: {{GREETING: job}}
  cold:
    every: 1h
    command: [{sys.executable}, manage.py, show_run]
    env: {{DJANGO_SETTINGS_MODULE: itsite.settings, GREETING: job}}
  warm_fails:
    every: 1h
    runtime: django
    command: [manage.py, show_run, --exit, "3"]
    on_failure: ['sh', '-c', 'echo "$JOBD_FAILED_JOB $JOBD_FAILED_OUTCOME $JOBD_FAILED_EXIT_CODE" >> {{root}}/hooks']
  warm_slow:
    every: 1h
    runtime: django
    command: [manage.py, show_run, --sleep, "60"]
    timeout: 2s
    kill_grace: 1s
"""


@pytest.fixture
def warm(jobd_bin: Path, tmp_path: Path, settings: Any) -> Iterator[Jobd]:
    daemon = Jobd(jobd_bin, tmp_path, extra=RUNTIME.replace("{root}", str(tmp_path)))
    # The task backend's jobd task runs as a fork of the runtime too.
    text = daemon.jobfile.read_text().replace(
        "  django_task:\n    command:", "  django_task:\n    runtime: django\n    command:", 1
    )
    text = re.sub(r"(  django_task:\n    runtime: django\n    command: )\[[^\]]*\]",
                  r"\1[manage.py, jobd_task]", text)
    daemon.jobfile.write_text(text)
    daemon.start()
    settings.TASKS = {
        "default": {
            "BACKEND": "jobd.django.JobdBackend",
            "QUEUES": [],
            "OPTIONS": {"spool_dir": str(daemon.spool)},
        }
    }
    wait_for("the runtime's server to be ready", lambda: server_pid(daemon), daemon)
    yield daemon
    daemon.stop()


def status(jobd: Jobd) -> dict[str, Any]:
    answer = jobd.jobctl("status", "--json")
    return json.loads(answer.stdout) if answer.returncode == 0 else {}


def server_pid(jobd: Jobd) -> int | None:
    runtimes = status(jobd).get("runtimes") or [{}]
    runtime = runtimes[0]
    return runtime.get("pid") if runtime.get("state") == "ready" else None


def run(jobd: Jobd, job: str) -> tuple[int, list[str]]:
    """`jobctl run JOB --wait`: its exit code, and the run's lines from jobd's log."""
    answer = jobd.jobctl("run", job, "--wait")
    run_id = answer.stdout.split("[", 1)[1].split("]", 1)[0]
    lines = [
        line.split(f"{job}[{run_id}]: ", 1)[1]
        for line in jobd.log().splitlines()
        if f"{job}[{run_id}]: " in line
    ]
    return answer.returncode, lines


def seen(lines: list[str], key: str) -> str:
    return next(line.split(" ", 1)[1] for line in lines if line.startswith(key + " "))


def test_a_warm_manage_py_job_behaves_as_the_cold_one(warm: Jobd) -> None:
    server = server_pid(warm)
    code, warm_lines = run(warm, "warm")
    cold_code, cold_lines = run(warm, "cold")
    assert code == cold_code == 0
    for key in ("greeting", "cwd"):
        assert seen(warm_lines, key) == seen(cold_lines, key), (warm_lines, cold_lines)
    assert seen(warm_lines, "greeting") == "job"
    assert seen(warm_lines, "job") == "warm attempt 1"
    assert seen(warm_lines, "parent") == str(server), "a fork of the server"
    assert seen(cold_lines, "parent") == str(warm.pid), "jobd's own child"
    assert "on stderr" in warm_lines
    # A second run finds the command module as the server imported it.
    _, again = run(warm, "warm")
    assert seen(again, "runs-in-process") == "1"
    assert seen(again, "run-id") != seen(warm_lines, "run-id")


def test_exit_codes_timeouts_and_on_failure_are_a_cold_runs(warm: Jobd, tmp_path: Path) -> None:
    code, _ = run(warm, "warm_fails")
    assert code == 3
    hooks = wait_for("the failure hook", lambda: (tmp_path / "hooks").exists() and
                     (tmp_path / "hooks").read_text(), warm)
    assert hooks.strip() == "warm_fails failure 3"
    code, _ = run(warm, "warm_slow")
    assert code == 143
    history = json.loads(warm.jobctl("history", "warm_slow", "--json").stdout)
    assert history[0]["outcome"] == "timeout"


@pytest.mark.django_db(transaction=True)
def test_a_django_task_runs_warm(warm: Jobd) -> None:
    before = status(warm)["runtimes"][0]["runs"]
    answer = Client().post("/enqueue/add/", {"args": json.dumps([20, 22])})
    assert answer.status_code == 202, answer.content
    result_id = str(answer.json()["id"])

    def probe() -> Any:
        found = tasks.add.get_result(result_id)
        return found if found.is_finished else None

    done = wait_for("the warm task to finish", probe, warm)
    assert done.status == compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value == 42
    runtime = status(warm)["runtimes"][0]
    assert runtime["runs"] == before + 1, "the task was a fork of the server"
