"""`manage.py jobd_task`: what jobd's `django_task` task runs for each enqueued Task."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobd.django.runner import Unusable, run


class Command(BaseCommand):
    help = (
        "Run the Django task of a jobd spool request (JOBD_SPOOL_FILE) and write its "
        "return value or error to JOBD_RESULT_FILE. Run by jobd, not by hand."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = run(os.environ)
        except Unusable as e:
            raise CommandError(str(e)) from None
        if status:
            # The traceback is printed already; exit 1 makes jobd count a failed attempt.
            sys.exit(status)
