"""Where the spool is, and what a client may expect of it."""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import SpoolError, SpoolMissing

_CAUSE = (
    "jobd creates it when it starts: start jobd once on this spool "
    "(`spool: {dir: ...}` in jobd.yaml), or submit with `jobctl submit`, "
    "which works while jobd is down"
)


@dataclass(frozen=True)
class Spool:
    """A spool directory's places (docs/spool-format.md, "The layout")."""

    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def new(self) -> Path:
        return self.root / "new"

    @property
    def running(self) -> Path:
        return self.root / "running"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def tasks_json(self) -> Path:
        return self.root / "tasks.json"

    def require_layout(self) -> None:
        """SpoolMissing unless jobd has made this spool's layout; nothing is created."""
        if not self.root.is_dir():
            raise SpoolMissing(f"the spool directory {self.root} does not exist: {_CAUSE}")
        for needed in (self.tmp, self.new):
            if not needed.is_dir():
                raise SpoolMissing(f"{needed} does not exist: {_CAUSE}")
        if not self.tasks_json.exists():
            raise SpoolMissing(
                f"{self.tasks_json} does not exist: {_CAUSE} (a jobd older than the "
                "spool format of this package does not write it: upgrade jobd)"
            )


def locate(spool_dir: str | os.PathLike[str] | None = None) -> Spool:
    """The spool: `spool_dir`, else Django's JOBD_SPOOL_DIR setting (when Django is
    configured), else the JOBD_SPOOL_DIR environment variable."""
    if spool_dir is not None:
        return Spool(Path(spool_dir))
    configured = _django_setting("JOBD_SPOOL_DIR")
    if configured:
        return Spool(Path(configured))
    from_env = os.environ.get("JOBD_SPOOL_DIR")
    if from_env:
        return Spool(Path(from_env))
    raise SpoolError(
        "no spool directory: pass spool_dir=, or set JOBD_SPOOL_DIR (a Django setting or an "
        "environment variable) to the `spool: dir:` of jobd.yaml"
    )


def _django_setting(name: str) -> str | None:
    # Only a process that has imported Django's settings can have configured them:
    # a script without Django must not pay for importing it, nor fail on its absence.
    if "django.conf" not in sys.modules:
        return None
    from django.conf import settings

    if not settings.configured:
        return None
    value = getattr(settings, name, None)
    return os.fspath(value) if value else None


@dataclass(frozen=True)
class Snapshot:
    """One spool entry as read at one moment."""

    data: bytes | None  # None: not a regular file, or larger than the limit read
    ctime: float  # renaming a file into a folder sets it: when it arrived there
    mtime: float


def snapshot(path: Path, limit: int) -> Snapshot | None:
    """The entry at `path` (None when there is none), its bytes read when it is a
    regular file of at most `limit` bytes. Never follows a link, never blocks:
    submitters may put anything in the spool, a FIFO or a link to another file."""
    try:
        meta = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _unreadable(path, e) from e
    if not stat.S_ISREG(meta.st_mode):
        return Snapshot(None, meta.st_ctime, meta.st_mtime)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Snapshot(None, meta.st_ctime, meta.st_mtime)
        raise _unreadable(path, e) from e
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Snapshot(None, meta.st_ctime, meta.st_mtime)
        data = file.read(limit + 1)
    return Snapshot(data if len(data) <= limit else None, meta.st_ctime, meta.st_mtime)


def _unreadable(path: Path, error: OSError) -> SpoolError:
    hint = (
        ": this user must be in the spool's group (`spool: group:` in jobd.yaml)"
        if isinstance(error, PermissionError)
        else ""
    )
    return SpoolError(f"cannot read {path}: {error.strerror}{hint}")
