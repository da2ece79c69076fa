import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Says it naps, then sleeps."

    def add_arguments(self, parser):
        parser.add_argument("seconds", type=float)

    def handle(self, seconds, **options):
        print("napping", flush=True)
        time.sleep(seconds)
        print("woke")
