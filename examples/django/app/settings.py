"""A small shop whose background work all runs on jobd: scheduled jobs from jobd.yaml,
one-off work through Django's task framework with jobd as its worker.

    pip install "Django>=6.0" django-mailer /path/to/jobd/python
    # Django 5.2: pip install "Django>=5.2,<6" django-tasks django-mailer /path/to/jobd/python

What jobd needs here: "jobd.django" in INSTALLED_APPS, TASKS, and where jobd.yaml
puts the spool and the control socket (JOBD_SPOOL_DIR, JOBD_SOCKET).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "the example's key: set DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mailer",  # django-mailer: mail is queued in the database, jobd's send_mail job sends it
    "jobd.django",  # the task backend, manage.py jobd_task and jobd_status, the admin page
    "reports",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "app.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "app.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DATABASE", BASE_DIR / "db.sqlite3"),
    }
}
USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = "mailer.backend.DbBackend"
ADMINS = [("Ops", "ops@example.com")]

# jobd.yaml's `spool: dir:` and `socket:`. The web user writes the spool as a member of
# `spool: group:` (jobd-submit) and reads jobd's status as a member of `read_group:`.
JOBD_SPOOL_DIR = os.environ.get("JOBD_SPOOL_DIR", "/var/lib/jobd/myapp/spool")
JOBD_SOCKET = os.environ.get("JOBD_SOCKET", "/run/jobd/myapp/jobd.sock")

TASKS = {
    "default": {
        "BACKEND": "jobd.django.JobdBackend",
        "OPTIONS": {
            # Each queue is a task of jobd.yaml, with its own timeout, retries and
            # max_instances; each runs `manage.py jobd_task`.
            "queues": {"default": "django_task", "reports": "django_reports"},
            "spool_dir": JOBD_SPOOL_DIR,
            # enqueue() inside a transaction hands the job to jobd when it commits: the
            # job never runs before the rows it reads exist, nor for a rolled-back request.
            "enqueue_on_commit": True,
        },
    }
}
