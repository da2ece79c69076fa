"""Hand a one-off job to jobd from Python (a Django view, a management command, ...).

No dependency, no broker: the request is a small JSON file written into jobd's spool
directory the safe way (into tmp/, flushed to disk, then renamed into new/), so jobd
never sees half a file. jobd picks it up at once; if jobd is down, when it starts.

    from jobd_spool import submit
    submit("long_report", "--month", "2026-10")              # now
    submit("long_report", "--month", "2026-10", delay=90)    # in 90 seconds

The spool directory is `spool_dir=`, else the JOBD_SPOOL_DIR setting (Django) or
environment variable.
"""

import datetime
import json
import os
import secrets

__all__ = ["submit"]


def _spool_dir(spool_dir):
    if spool_dir:
        return spool_dir
    try:
        from django.conf import settings

        configured = getattr(settings, "JOBD_SPOOL_DIR", None)
        if configured:
            return configured
    except Exception:  # Django absent or not configured: fall back to the environment.
        pass
    try:
        return os.environ["JOBD_SPOOL_DIR"]
    except KeyError:
        raise RuntimeError("set JOBD_SPOOL_DIR (setting or environment) or pass spool_dir=") from None


def submit(task, *args, delay=None, run_at=None, env=None, spool_dir=None):
    """Queue one run of `task` (a name from the jobfile's `tasks:`); returns the file name.

    `args` are appended to the task's command as they are (never through a shell).
    `delay` (seconds) or `run_at` (an aware datetime) hold the run until then.
    """
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    request = {"task": task, "args": [str(a) for a in args]}
    if env:
        request["env"] = {str(k): str(v) for k, v in env.items()}
    if delay is not None:
        request["delay"] = f"{max(0, int(round(delay * 1000)))}ms"
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        request["run_at"] = run_at.astimezone(datetime.timezone.utc).isoformat()

    root = _spool_dir(spool_dir)
    tmp, new = os.path.join(root, "tmp"), os.path.join(root, "new")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{task}.{stamp}.{os.getpid()}.{secrets.token_hex(4)}.json"
    staged = os.path.join(tmp, name)
    with open(staged, "x", encoding="utf-8") as f:
        json.dump(request, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(staged, os.path.join(new, name))
    # The rename is the hand-off: make it survive a crash.
    directory = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return name
