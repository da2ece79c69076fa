"""A minimal project for the jobd.django tests: the admin, and a JobdBackend whose spool
each test points at its own fake spool (the `tasks_spool` fixture)."""

SECRET_KEY = "tests only"
USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "jobd.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "testsite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
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
# Any queue: tasks.py declares one for the queue-mapping tests.
TASKS = {"default": {"BACKEND": "jobd.django.JobdBackend", "QUEUES": []}}
# Fast hashing: the tests log users in, and PBKDF2 takes seconds per login.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
