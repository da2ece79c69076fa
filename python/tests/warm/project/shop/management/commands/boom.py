from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Raises: an uncaught exception."

    def handle(self, **options):
        print("before the boom")
        raise ValueError("boom")
