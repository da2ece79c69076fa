"""The test project: startproject's apps and one small app (shop). Where the database
and the log file go comes from the environment, so no test writes into the tree."""

import os

SECRET_KEY = "warm-runtime-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "shop",
]
# A heavier project for the benchmark (python/bench/warm_vs_cold --heavy): more apps,
# and libraries imported at start-up, as a real shop's settings do.
INSTALLED_APPS += [app for app in os.environ.get("PROJ_EXTRA_APPS", "").split(",") if app]
for module in filter(None, os.environ.get("PROJ_IMPORTS", "").split(",")):
    __import__(module)
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        # With WARM_TEST_WIRE, every connection also holds a socket to the test, as a
        # PostgreSQL connection would (see shop/wiredb).
        "ENGINE": "shop.wiredb" if os.environ.get("WARM_TEST_WIRE") else "django.db.backends.sqlite3",
        "NAME": os.environ.get("WARM_TEST_DB", ":memory:"),
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"shop": {"handlers": ["console"], "level": "INFO"}},
}
if os.environ.get("WARM_TEST_LOG"):
    LOGGING["handlers"]["file"] = {"class": "logging.FileHandler", "filename": os.environ["WARM_TEST_LOG"]}
    LOGGING["loggers"]["shop"]["handlers"].append("file")
