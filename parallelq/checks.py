"""System checks: PARALLELQ's mistakes shown by `manage.py check`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from parallelq.conf import DEFAULTS, Settings, validate
from parallelq.engine import database_url

MIDDLEWARE = "parallelq.middleware.ParallelQueryMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every invalid PARALLELQ value, an unusable database, and a pool too small."""
    user = getattr(settings, "PARALLELQ", {})
    problems = validate(user)
    if problems:
        return [Error(p.msg, hint=p.hint, id=p.id) for p in problems]
    conf = Settings(**{**DEFAULTS, **user})
    return _check_database(conf) + _check_pool(conf)


def _check_database(conf: Settings) -> list[CheckMessage]:
    try:
        database_url(conf).get_dialect()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="parallelq.E007")]
    except sa.exc.NoSuchModuleError as exc:
        return [
            Error(
                f"PARALLELQ['DATABASE_URL'] names a database driver SQLAlchemy cannot load: {exc}.",
                hint="Install the driver, or use e.g. 'postgresql+psycopg2://…' or 'sqlite:///…'.",
                id="parallelq.E007",
            )
        ]
    return []


def _check_pool(conf: Settings) -> list[CheckMessage]:
    options = conf.engine_options
    if "poolclass" in options:
        return []
    capacity = int(options["pool_size"]) + int(options["max_overflow"])
    # One connection for the request's own Session, one per running task.
    if capacity >= conf.MAX_WORKERS + 1:
        return []
    return [
        Warning(
            f"PARALLELQ['MAX_WORKERS'] is {conf.MAX_WORKERS} but the connection pool holds "
            f"{capacity} (pool_size {options['pool_size']} + max_overflow "
            f"{options['max_overflow']}): one request's tasks would wait for each other's "
            "connections, and concurrent requests up to pool_timeout.",
            hint=f"Set ENGINE_OPTIONS pool_size to at least {conf.MAX_WORKERS + 1}, "
            "or lower MAX_WORKERS.",
            id="parallelq.W002",
        )
    ]


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when the middleware is missing: parallel() then works only inside scope()."""
    if MIDDLEWARE in getattr(settings, "MIDDLEWARE", []):
        return []
    return [
        Warning(
            f"{MIDDLEWARE} is not in MIDDLEWARE, so views have no parallelq scope and "
            "parallel() raises NoScopeError in them.",
            hint=f"Add '{MIDDLEWARE}' to MIDDLEWARE, or silence parallelq.W001 if you "
            "use parallelq only inside `with parallelq.scope():`.",
            id="parallelq.W001",
        )
    ]
