import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from fakejobd import STATUS, FakeJobd
from fakespool import FakeSpool, attempt

import jobd


@pytest.fixture
def jobd_socket(tmp_path: Path, settings: Any) -> Iterator[Path]:
    path = tmp_path / "jobd.sock"
    server = FakeJobd(path, STATUS)
    settings.JOBD_SOCKET = str(path)
    yield path
    server.close()


@pytest.fixture
def one_offs(spool: FakeSpool, tasks_on: Any) -> FakeSpool:
    jobd.submit("django_task", data={}, id="waiting", spool_dir=spool.root)
    spool.result("running", "again", state="retrying", attempt=1, outcome="failure", exit_code=1,
                 next_attempt_at="2099-01-01T00:00:00Z", attempts=[attempt(1, "failure")])
    spool.result("failed", "refused", state="failed", task=None, reason="unknown task `nope`")
    return spool


def status_output(*args: str) -> str:
    out = io.StringIO()
    call_command("jobd_status", *args, stdout=out)
    return out.getvalue()


def test_jobd_status_from_the_socket(jobd_socket: Path, one_offs: FakeSpool) -> None:
    text = status_output()
    assert text.startswith(
        f"source: scheduled jobs from jobd's control socket {jobd_socket}; "
        f"one-off jobs from the spool folders in {one_offs.root}\n"
    )
    assert "jobd 0.1.0 (pid 4242), up 1h, environment production" in text
    assert "PROBLEM: cannot write the history file: No space left on device" in text
    jobs = re.findall(r"^(\w+)\s+\*/5", text, re.M)
    assert jobs == ["monthly_report", "import_daily", "send_mail", "clear_sessions"]
    assert "OVERDUE, last succeeded" in text
    assert "failed: exited with status 1" in text
    assert "jobd counts 3 queued, 1 delayed, 2 running, 0 waiting to retry, 4 failed in the last 24h" in text
    assert re.search(r"waiting\s+queued\s+django_task\s+since ", text)
    assert re.search(r"again\s+retrying\s+django_task\s+attempt 1 failed \(exit 1\); next attempt 2099-01-01", text)
    assert re.search(r"refused\s+failed\s+\?\s+unknown task `nope`", text)


def test_jobd_status_without_jobd(one_offs: FakeSpool, tmp_path: Path) -> None:
    text = status_output("--socket", str(tmp_path / "gone.sock"))
    assert text.startswith(
        f"source: no answer from jobd: jobd is not running (no socket at {tmp_path / 'gone.sock'}); "
        f"scheduled jobs unknown; one-off jobs from the spool folders in {one_offs.root}"
    )
    assert "scheduled jobs, overdue and failing first" not in text
    assert "new/ (queued or delayed): 1" in text


def test_jobd_status_without_a_spool(settings: Any, tmp_path: Path) -> None:
    settings.TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend", "QUEUES": []}}
    text = status_output("--spool", str(tmp_path / "none"))
    assert "cannot read the spool: the spool directory" in text and "start jobd once" in text


@pytest.mark.django_db
def test_the_admin_page_is_for_staff_and_read_only(jobd_socket: Path, one_offs: FakeSpool) -> None:
    client = Client()
    page = "/admin/jobd/status/"
    assert client.get(page).status_code == 302  # to the login page
    User.objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    assert client.get(page).status_code == 302
    User.objects.create_user("staff", password="pw", is_staff=True)
    client.login(username="staff", password="pw")
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/jobd/status/"' in index and ">jobd<" in index
    assert "Add" not in re.sub(r"\s+", " ", index).split("jobd/status/")[1][:200]
    html = client.get(page).content.decode()
    assert f"Source: scheduled jobs from jobd&#x27;s control socket {jobd_socket}" in html
    assert html.index("monthly_report") < html.index("import_daily") < html.index("send_mail")
    assert "unknown task `nope`" in html
    assert client.get(page + "add/").status_code == 404


@pytest.mark.django_db
def test_the_admin_page_says_when_jobd_is_down(one_offs: FakeSpool, settings: Any, tmp_path: Path) -> None:
    settings.JOBD_SOCKET = str(tmp_path / "gone.sock")
    User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.login(username="staff", password="pw")
    html = client.get("/admin/jobd/status/").content.decode()
    assert "no answer from jobd: jobd is not running" in html
    assert "Unknown while jobd does not answer on its control socket." in html
