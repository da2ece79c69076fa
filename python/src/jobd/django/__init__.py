"""jobd as the worker of Django's task framework, and jobd's status in Django.

    INSTALLED_APPS += ["jobd.django"]
    TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend",
                         "OPTIONS": {"task": "django_task", "spool_dir": BASE_DIR / "var/spool"}}}

`@task` functions stay as they are: `.enqueue()` hands a request to jobd's spool, jobd
runs `manage.py jobd_task` for it, and `get_result()` reads what became of it.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use: the app (its admin page, jobd_status) must load in a
    # project without a task framework, where the backend cannot.
    if name == "JobdBackend":
        from .backend import JobdBackend

        return JobdBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["JobdBackend"]
