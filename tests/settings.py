"""Settings for `manage.py test`: the demo's, on a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import tempfile

from demo_project.settings import *  # noqa: F403
from tests import pg

try:
    DATABASES = {"default": pg.database_settings()}
    POSTGRES_UNAVAILABLE = ""
except pg.Unavailable as exc:
    if os.environ.get("CI") == "true":
        raise
    # Without PostgreSQL the SQLite tests still run; the others are skipped with this reason.
    POSTGRES_UNAVAILABLE = f"PostgreSQL is not available: {exc}"
    _sqlite = os.path.join(tempfile.mkdtemp(prefix="parallelq-test-"), "test.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _sqlite,
            "TEST": {"NAME": _sqlite},
        }
    }

INSTALLED_APPS = [*INSTALLED_APPS, "tests.shelf"]  # noqa: F405 - a Django model for the tests
ROOT_URLCONF = "tests.urls"
TEST_RUNNER = "tests.runner.Runner"
PARALLELQ = {"MAX_WORKERS": 8}
LOGGING = {"version": 1, "disable_existing_loggers": False}
