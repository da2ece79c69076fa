"""A child's life, from fork to exit: leave the server behind, become the run's process,
run, exit with the status a cold run would have."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import NoReturn

from . import django_support, finish, loghandlers, program, sigchld, stdio
from .messages import Run
from .parent_death import ParentDeath

# What the child exits with when it cannot become the run's process (the workdir went
# away after the server opened it...): the shell's "cannot execute", since the run's
# own code never started.
CANNOT_PREPARE = 127


@dataclass(frozen=True)
class Inherited:
    """What the server learned once and every child needs."""

    server_pid: int
    parent_death: ParentDeath
    preload_env: dict[str, str]
    path_entry: str | None


def main(run: Run, cwd_fd: int, inherited: Inherited) -> NoReturn:
    try:
        prepare(run, cwd_fd, inherited)
    except BaseException as e:
        # No finalization: atexit handlers and threads belong to the server's state,
        # which this child has not finished leaving (its sockets may still be open).
        print(f"jobd.warm: cannot start run {run.run_id}: {e}", file=sys.stderr)
        traceback.print_exc()
        stdio.flush()
        os._exit(CANNOT_PREPARE)
    error: BaseException | None = None
    try:
        program.run(run.argv, inherited.path_entry)
    except BaseException as e:
        error = e
    status = finish.status_of(error)
    finish.exit_process(status, interrupted=isinstance(error, KeyboardInterrupt))


def prepare(run: Run, cwd_fd: int, inherited: Inherited) -> None:
    sigchld.uninstall()
    # The server also sets the group, before it reports the pid (jobd may signal the
    # group at once); whichever of the two comes first makes it exist.
    os.setpgid(0, 0)
    inherited.parent_death.arm(inherited.server_pid)
    # The received descriptors are >= 3: the server's own 0, 1 and 2 are open (jobd
    # gives /dev/null and its log pipes), so no dup2 below overwrites a later source.
    os.dup2(run.stdin, 0)
    os.dup2(run.stdout, 1)
    os.dup2(run.stderr, 2)
    # The cold run's interpreter reads PYTHONUNBUFFERED from the run's env, not the
    # server's.
    unbuffered = bool(run.env.get("PYTHONUNBUFFERED"))
    loghandlers.release(stdio.replace(unbuffered))
    os.fchdir(cwd_fd)
    os.closerange(3, _descriptor_limit())
    django_support.forget_connections()
    os.environ.clear()
    os.environ.update(run.env)
    os.environ.update(inherited.preload_env)
    # The C library read TZ when the server started; localtime() must follow the run's.
    time.tzset()
    # Nothing to do for random: the stdlib's re-seeded itself in os.fork() (its
    # register_at_fork hook), as did every library that registered one.

    # The dispositions a fresh interpreter has, whatever the preload set.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _descriptor_limit() -> int:
    """One past the highest descriptor this process may hold. Linux's closerange is one
    close_range() call whatever the bound; elsewhere it is a loop up to it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else os.sysconf("SC_OPEN_MAX")
