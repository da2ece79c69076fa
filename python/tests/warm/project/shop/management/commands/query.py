import logging

from django.db import connection
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Queries the database and logs it."

    def handle(self, **options):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 40 + 2")
            (answer,) = cursor.fetchone()
        logging.getLogger("shop").info("queried %s", answer)
        print(answer)
