"""System checks: PARALLELQ's mistakes shown by `manage.py check`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from parallelq.conf import DEFAULTS, Settings, validate
from parallelq.engine import DatabaseURLError, database_url
from parallelq.replicas import replica_urls

MIDDLEWARE = "parallelq.middleware.ParallelQueryMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every invalid PARALLELQ value, an unusable database, and a pool too small."""
    user = getattr(settings, "PARALLELQ", {})
    problems = validate(user)
    if problems:
        return [Error(p.msg, hint=p.hint, id=p.id) for p in problems]
    conf = Settings(**{**DEFAULTS, **user})
    return _check_database(conf) + _check_replicas(conf) + _check_pool(conf)


def _check_database(conf: Settings) -> list[CheckMessage]:
    try:
        url = database_url(conf)
    except DatabaseURLError as exc:
        return [Error(exc.msg, hint=exc.hint, id="parallelq.E007")]
    if conf.STATEMENT_TIMEOUT is not None and url.get_backend_name() != "postgresql":
        return [
            Warning(
                f"PARALLELQ['STATEMENT_TIMEOUT'] has no effect on {url.get_backend_name()}: "
                "only PostgreSQL enforces it.",
                hint="Use parallel(timeout=...) or PARALLELQ['TIMEOUT'], which cancel "
                "statements on every database.",
                id="parallelq.W003",
            )
        ]
    return []


def _check_replicas(conf: Settings) -> list[CheckMessage]:
    try:
        replica_urls(conf)
    except DatabaseURLError as exc:
        return [Error(exc.msg, hint=exc.hint, id="parallelq.E008")]
    return []


def _check_pool(conf: Settings) -> list[CheckMessage]:
    options, capacity = conf.engine_options, conf.pool_capacity
    # One connection for the request's own Session, one per running task.
    if capacity is None or capacity >= conf.MAX_WORKERS + 1:
        return []
    return [
        Warning(
            f"PARALLELQ['MAX_WORKERS'] is {conf.MAX_WORKERS} but the connection pool holds "
            f"{capacity} (pool_size {options['pool_size']} + max_overflow "
            f"{options['max_overflow']}): a request's tasks would wait for each other's "
            "connections, and under concurrent requests they would wait up to pool_timeout.",
            hint=f"Make pool_size + max_overflow in ENGINE_OPTIONS at least "
            f"{conf.MAX_WORKERS + 1} (one connection per task, one for the request), "
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
