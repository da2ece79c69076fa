"""Both backends side by side: "default" is django-tasks-db (its db_worker runs it),
"jobd" is JobdBackend. BENCH_DIR holds the database, the spool and the entry log."""

import os

BENCH_DIR = os.environ["BENCH_DIR"]
SECRET_KEY = "benchmark only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_tasks_db", "jobd.django"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(BENCH_DIR, "db.sqlite3"),
        # Two workers and the enqueuer share the file: wait for its lock, and let
        # readers go on beside the writer.
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
TASKS = {
    "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    "jobd": {
        "BACKEND": "jobd.django.JobdBackend",
        "OPTIONS": {"spool_dir": os.path.join(BENCH_DIR, "spool")},
    },
}
