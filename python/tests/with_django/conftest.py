from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakespool import FakeSpool

DJANGO_TASKS = {
    "django_task": {"accept": {"data": True}, "retries": 2, "max_instances": None},
    "django_reports": {"accept": {"data": True}, "retries": 0, "max_instances": 1},
    "no_data": {"retries": 0, "max_instances": None},
}


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSpool:
    monkeypatch.delenv("JOBD_SPOOL_DIR", raising=False)
    monkeypatch.delenv("JOBD_SOCKET", raising=False)
    return FakeSpool(tmp_path / "spool", DJANGO_TASKS)


@pytest.fixture
def tasks_on(settings: Any, spool: FakeSpool) -> Iterator[Any]:
    """Point the default JobdBackend at this test's spool; returns a setter for OPTIONS."""

    def configure(**options: Any) -> None:
        settings.TASKS = {
            "default": {
                "BACKEND": "jobd.django.JobdBackend",
                "OPTIONS": {"spool_dir": str(spool.root), **options},
            }
        }

    configure()
    yield configure
