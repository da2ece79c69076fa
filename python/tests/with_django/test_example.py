"""examples/django is a real project: it checks, migrates, and its view enqueues."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakespool import FakeSpool

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "django"

ENQUEUE = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
user = get_user_model().objects.create_user("ann", "ann@example.com", "pw")
client = Client()
client.force_login(user)
made = client.post("/reports/", {"month": "2026-10"})
request_id = made.json()["id"]
seen = client.get(f"/reports/{request_id}/")
print(json.dumps([made.status_code, request_id, seen.status_code, seen.json()]))
"""


def manage(tmp_path: Path, spool: FakeSpool, *args: str) -> str:
    env = {
        **os.environ,
        "JOBD_SPOOL_DIR": str(spool.root),
        "DJANGO_DATABASE": str(tmp_path / "db.sqlite3"),
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_SETTINGS_MODULE": "app.settings",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_example_project_checks_migrates_and_enqueues(tmp_path: Path, spool: FakeSpool) -> None:
    pytest.importorskip("mailer", reason="the example uses django-mailer (run-tests installs it)")
    manage(tmp_path, spool, "check", "--fail-level", "WARNING")
    manage(tmp_path, spool, "makemigrations", "--check", "--dry-run")
    manage(tmp_path, spool, "migrate", "-v0")
    # The last line: Django 6's shell first says what it imported.
    output = manage(tmp_path, spool, "shell", "-c", ENQUEUE).splitlines()[-1]
    made, request_id, seen, status = json.loads(output)
    assert (made, seen, status) == (202, 200, {"status": "READY", "attempts": 0})
    request = json.loads((spool.root / "new" / f"{request_id}.json").read_text())
    assert request["task"] == "django_reports"
    assert request["data"]["module_path"] == "reports.tasks.long_report"
    assert request["data"]["args"] == ["2026-10", "ann@example.com"]
