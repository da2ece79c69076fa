"""What a run sees, printed, for the warm-against-cold tests; exits with --exit."""

import os
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

# Module state: a warm run must find it as the server imported it, never as an
# earlier run left it.
RUNS_IN_THIS_PROCESS = 0


class Command(BaseCommand):
    help = "Print what the run sees."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--exit", type=int, default=0)
        parser.add_argument("--sleep", type=float, default=0.0)

    def handle(self, *args: Any, **options: Any) -> None:
        global RUNS_IN_THIS_PROCESS
        RUNS_IN_THIS_PROCESS += 1
        env = os.environ
        self.stdout.write(f"runs-in-process {RUNS_IN_THIS_PROCESS}")
        self.stdout.write(f"job {env['JOBD_JOB']} attempt {env['JOBD_ATTEMPT']}")
        self.stdout.write(f"run-id {env['JOBD_RUN_ID']}")
        self.stdout.write(f"scheduled {env['JOBD_SCHEDULED_AT']}")
        self.stdout.write(f"greeting {env.get('GREETING')}")
        self.stdout.write(f"cwd {os.getcwd()}")
        self.stdout.write(f"parent {os.getppid()}")
        sys.stderr.write("on stderr\n")
        if options["sleep"]:
            time.sleep(options["sleep"])
        sys.exit(options["exit"])
