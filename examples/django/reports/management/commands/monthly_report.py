"""`manage.py monthly_report`: last month's figure for the ADMINS, scheduled by jobd.yaml
(`monthly_report`, 06:00 on the 1st). The same function the web page enqueues, called
here in the job's own process."""

import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from reports.tasks import long_report


class Command(BaseCommand):
    help = "Mail last month's customer figure to the ADMINS."

    def handle(self, *args: Any, **options: Any) -> None:
        first = timezone.localdate().replace(day=1)
        month = (first - datetime.timedelta(days=1)).strftime("%Y-%m")
        for _, email in settings.ADMINS:
            figure = long_report.call(month, email)
            self.stdout.write(f"{month}: {figure['joined']} customers, mailed to {email}")
