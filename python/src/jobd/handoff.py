"""The hand-off: a request becomes visible to jobd whole, once, or not at all."""

from __future__ import annotations

import os

from . import ids
from .errors import SpoolError, SubmitError
from .spool import Spool

# Readable by the spool's group (jobd is a member), whatever the submitter's umask.
_MODE = 0o640


def hand_off(spool: Spool, request_id: str, encoded: bytes) -> None:
    """Write `encoded` into tmp/, flush it to disk, rename it into new/ and flush new/:
    jobd never sees half a file, and a crash after this returns does not lose it."""
    name = ids.file_name(request_id)
    staged = spool.tmp / name
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _MODE)
    except FileExistsError:
        raise SubmitError(f"id {request_id!r} is being submitted by another process") from None
    except OSError as e:
        raise _unwritable(spool.tmp, e) from e
    try:
        try:
            os.fchmod(fd, _MODE)
            _write_all(fd, encoded)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(staged, spool.new / name)
    except OSError as e:
        _discard(staged)
        raise _unwritable(spool.new, e) from e
    except BaseException:
        _discard(staged)
        raise
    _sync_dir(spool.new)


def refuse_taken(spool: Spool, request_id: str) -> None:
    """SubmitError when a request of this id is in the spool already: renaming over it
    would replace a queued request, or make two results answer to one id."""
    name = ids.file_name(request_id)
    for folder in (spool.new, spool.running, spool.done, spool.failed):
        if os.path.lexists(folder / name):
            raise SubmitError(f"id {request_id!r} is already in use ({folder / name})")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_dir(path: os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unwritable(folder: os.PathLike[str], error: OSError) -> SpoolError:
    hint = (
        ": this user must be in the spool's group (`spool: group:` in jobd.yaml) "
        "and listed in spool.allow_users or allow_groups"
        if isinstance(error, PermissionError)
        else ""
    )
    return SpoolError(f"cannot write into {os.fspath(folder)}: {error.strerror}{hint}")
