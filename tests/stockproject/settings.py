"""A new user's project: no TEST_RUNNER, and parallelq's Engine derived from DATABASES.

tests/test_stock_project.py runs its tests with `manage.py test` and with
pytest-django, on the database STOCK_DATABASE_URL names (PostgreSQL or SQLite).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["STOCK_DATABASE_URL"])

SECRET_KEY = "stock-project-not-secret"
INSTALLED_APPS = ["parallelq", "shop"]
MIDDLEWARE = ["parallelq.middleware.ParallelQueryMiddleware"]
if _url.scheme == "sqlite":  # sqlite:///path/to/file
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _url.path}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "PASSWORD": _url.password or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
        }
    }
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
