import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Prints CLOCK_MONOTONIC in ns as handle() is entered (the benchmark's mark)."

    def handle(self, **options):
        print(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
