"""The one-off jobs in a spool's folders, newest first: what `jobd_status` and the
admin page show, whether jobd runs or not."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .results import RESULT_SUFFIX, Result, find
from .spool import Spool

FOLDERS = ("new", "running", "done", "failed")


@dataclass(frozen=True)
class Folder:
    name: str  # new (queued or delayed), running (running or retrying), done, failed
    count: int
    recent: tuple[Result, ...]  # the newest ones, each with its exact state


def list_spool(spool: Spool, recent: int = 20) -> tuple[Folder, ...]:
    """Each folder's count and its `recent` newest requests. Only those are read:
    new/ may hold 10,000 waiting files of up to 1 MiB each."""
    folders = []
    for name in FOLDERS:
        names = _newest_first(spool.root / name, results=name != "new")
        shown = []
        for file in names[:recent]:
            found = find(spool, file)
            if found is not None:  # it moved on since the folder was listed
                shown.append(found)
        folders.append(Folder(name=name, count=len(names), recent=tuple(shown)))
    return tuple(folders)


def _newest_first(folder: os.PathLike[str], results: bool) -> list[str]:
    """The request files of a folder: in new/ every visible entry; elsewhere those
    with a result (a request and its result sit side by side)."""
    entries = []
    try:
        with os.scandir(folder) as scan:
            for entry in scan:
                if entry.name.startswith("."):
                    continue  # a writer's or jobd's temporary file
                if results:
                    if not entry.name.endswith(RESULT_SUFFIX):
                        continue
                    name = entry.name[: -len(RESULT_SUFFIX)]
                else:
                    name = entry.name
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                entries.append((mtime, name))
    except FileNotFoundError:
        return []
    entries.sort(reverse=True)
    return [name for _, name in entries]
