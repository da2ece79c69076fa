"""`manage.py jobd_alert`: the on_failure hook of examples/django/jobd.yaml.

jobd runs it when a job fails or is overdue, with what happened in JOBD_FAILED_*
variables and the failed run's last output lines on stdin. It mails the site's
ADMINS through Django's own mail settings. Copy it into a management/commands/
folder of one of your apps.
"""

import os
import sys

from django.core.mail import mail_admins
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Mail the admins about a failed or overdue jobd job (run by jobd's on_failure)."

    def handle(self, *args, **options):
        env = os.environ
        job = env.get("JOBD_FAILED_JOB", "?")
        outcome = env.get("JOBD_FAILED_OUTCOME", "?")
        suppressed = int(env.get("JOBD_FAILED_SUPPRESSED", "0"))
        lines = [
            env.get("JOBD_FAILED_MESSAGE", ""),
            f"at {env.get('JOBD_FAILED_AT', '?')}, run {env.get('JOBD_FAILED_RUN_ID') or '-'}",
        ]
        if suppressed:
            lines.append(f"{suppressed} earlier failure(s) of {job} were not mailed (repeat_after).")
        output = sys.stdin.read()
        if output:
            lines += ["", "Last lines of its output:", output]
        mail_admins(f"jobd: {job} {outcome}", "\n".join(lines), fail_silently=False)
