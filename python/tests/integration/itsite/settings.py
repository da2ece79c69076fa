"""The integration tests' project: the tests enqueue in their own process (with the
spool of each test's jobd, set through the `settings` fixture), jobd runs the tasks in
children that read the same settings."""

import os

SECRET_KEY = "integration tests only"
USE_TZ = True
# itsite itself: its show_run command, and its tasks module a warm preload imports.
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "jobd.django", "itsite"]
ROOT_URLCONF = "itsite.urls"
ALLOWED_HOSTS = ["testserver"]
# A request runs in one transaction, rolled back when its view raises: what
# enqueue_on_commit is for.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "ATOMIC_REQUESTS": True,
    }
}
TASKS = {
    "default": {
        "BACKEND": "jobd.django.JobdBackend",
        "QUEUES": [],
        "OPTIONS": {"spool_dir": os.environ.get("JOBD_SPOOL_DIR")},
    }
}
