"""A preload entry that leaves a database connection open in the server, as app code
that queries at import does."""

from django.db import connection

connection.ensure_connection()
