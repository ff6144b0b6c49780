"""Settings of the demo bookstore: SQLite by default, PostgreSQL when DATABASE_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "parallelq",
    "demo_project",
]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "parallelq.middleware.ParallelQueryMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
WSGI_APPLICATION = "demo_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# Django itself keeps no data here; the bookstore lives in SQLAlchemy tables in
# the same database, which parallelq derives its Engine from.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_SQLITE_PATH", BASE_DIR / "demo.sqlite3"),
    }
}

PARALLELQ = {
    # For example postgresql://user:password@127.0.0.1:5432/bookstore
    "DATABASE_URL": os.environ.get("DATABASE_URL") or None,
    "MAX_WORKERS": 8,
    # Each response tells the browser's developer tools how long each task took.
    "SERVER_TIMING": True,
}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"parallelq": {"handlers": ["console"], "level": "WARNING"}},
}
