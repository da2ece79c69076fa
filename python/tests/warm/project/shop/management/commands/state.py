import json
import os
import random
import sys
import time

from django.core.management.base import BaseCommand

from shop import state, tasks


class Command(BaseCommand):
    help = "Prints what a run sees of its process, as JSON, after changing a module value."

    def handle(self, **options):
        state.VALUE += 1
        print(json.dumps({
            "value": state.VALUE,
            "random": random.random(),
            "tasks_imported_by": tasks.IMPORTED_BY,
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "tzname": time.tzname[0],
            "argv": sys.argv,
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "stdout_line_buffering": sys.stdout.line_buffering,
            "stderr_line_buffering": sys.stderr.line_buffering,
            "stdin": sys.stdin.read(),
        }))
