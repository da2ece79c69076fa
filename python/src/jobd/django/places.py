"""Where jobd_status and the admin page find jobd: its socket and its spool."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


def socket_path() -> str | None:
    """The JOBD_SOCKET setting, else the environment variable (jobd.yaml's `socket:`)."""
    configured = getattr(settings, "JOBD_SOCKET", None) or os.environ.get("JOBD_SOCKET")
    return os.fspath(configured) if configured else None


def spool_dir() -> Any:
    """The spool of the first JobdBackend in TASKS; else None, for jobd's own default
    (the JOBD_SPOOL_DIR setting or environment variable)."""
    for params in (getattr(settings, "TASKS", None) or {}).values():
        try:
            backend = import_string(params.get("BACKEND", ""))
        except ImportError:
            continue
        if _is_jobd_backend(backend):
            configured = (params.get("OPTIONS") or {}).get("spool_dir")
            if configured:
                return configured
    return None


def _is_jobd_backend(backend: Any) -> bool:
    # By name: importing JobdBackend needs a task framework, which this page does not.
    return isinstance(backend, type) and any(
        f"{cls.__module__}.{cls.__qualname__}" == "jobd.django.backend.JobdBackend"
        for cls in backend.__mro__
    )
