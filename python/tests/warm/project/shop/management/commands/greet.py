import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Output on both streams, and the exit the options ask for."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--code", type=int)
        parser.add_argument("--message")

    def handle(self, name, code, message, **options):
        self.stdout.write(f"hello {name}")
        print(f"printed {name}")
        self.stderr.write(f"greeting {name}")
        if code is not None:
            sys.exit(code)
        if message is not None:
            sys.exit(message)
