"""Settings every contender shares: Django's, parallelq's, and the peers' Engines.

The peers get the Engine options parallelq uses (its ENGINE_DEFAULTS overlaid with
PARALLELQ['ENGINE_OPTIONS']), so pool size, overflow and pre-ping are alike for all.
Each contender's connections carry an application_name of their own, so that
pg_stat_activity can tell them apart.
"""

from __future__ import annotations

from typing import Any

import django
import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parallelq.conf import ENGINE_DEFAULTS

MAX_WORKERS = 8  # parallelq's MAX_WORKERS, the thread peer's pool and the asyncio semaphores
STATEMENT_TIMEOUT_MS = 60_000  # every statement of every contender is bounded
HTTP_QUERIES, HTTP_QUERY_SECONDS = 5, 0.01  # what one request of the HTTP scenario runs
DATABASE_ENV = "BENCH_COMPARE_DATABASE"  # DATABASES['default'] as JSON, for the servers
PARALLELQ: dict[str, Any] = {
    "MAX_WORKERS": MAX_WORKERS,
    "ENGINE_OPTIONS": {"connect_args": {"application_name": "bench-parallelq"}},
}


def app_name(contender: str) -> str:
    """Return the application_name the connections of `contender` carry."""
    return f"bench-{contender}"


def configure_django(
    db: dict[str, Any], urlconf: str | None = None, parallelq: dict[str, Any] | None = None
) -> None:
    """Configure Django in-process with parallelq, the bench's model app and `db`.

    `parallelq` replaces the PARALLELQ setting every contender shares (bench.capacity
    varies MAX_WORKERS and the pool).
    """
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["parallelq", "bench.compare"],
        MIDDLEWARE=["parallelq.middleware.ParallelQueryMiddleware"],
        ROOT_URLCONF=urlconf,
        DATABASES={"default": {**db, "OPTIONS": _psycopg2_options(app_name("django"))}},
        PARALLELQ=PARALLELQ if parallelq is None else parallelq,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        TIME_ZONE="UTC",
        LOGGING={"version": 1, "disable_existing_loggers": False},
    )
    django.setup()


def _psycopg2_options(application_name: str) -> dict[str, str]:
    return {
        "application_name": application_name,
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    }


def pool_options() -> dict[str, Any]:
    """Return parallelq's Engine options as PARALLELQ sets them, less its connect_args."""
    options = {**ENGINE_DEFAULTS, **PARALLELQ["ENGINE_OPTIONS"]}
    options.pop("connect_args", None)
    return options


def pool_capacity() -> int:
    """Return the most connections one Engine of these options opens."""
    options = pool_options()
    return int(options["pool_size"]) + int(options["max_overflow"])


def _url(db: dict[str, Any], driver: str) -> sa.URL:
    return sa.URL.create(
        f"postgresql+{driver}",
        username=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=int(db["PORT"]) if db["PORT"] else None,
        database=db["NAME"],
    )


def psycopg2_params(db: dict[str, Any], contender: str) -> dict[str, Any]:
    """Return psycopg2.connect() arguments for `db`, as a peer's Engine connects."""
    params = {
        "host": db["HOST"] or None,
        "port": int(db["PORT"]) if db["PORT"] else None,
        "user": db["USER"] or None,
        "password": db["PASSWORD"] or None,
        "dbname": db["NAME"],
        **_psycopg2_options(app_name(contender)),
    }
    return {k: v for k, v in params.items() if v is not None}


def sync_engine(db: dict[str, Any], contender: str, **options: Any) -> sa.Engine:
    """Return a psycopg2 Engine with parallelq's pool options and `options`, for a peer."""
    return sa.create_engine(
        _url(db, "psycopg2"),
        connect_args=_psycopg2_options(app_name(contender)),
        **pool_options(),
        **options,
    )


def async_engine(db: dict[str, Any], contender: str) -> AsyncEngine:
    """Return an asyncpg AsyncEngine with parallelq's pool options, for a peer."""
    server_settings = {
        "application_name": app_name(contender),
        "statement_timeout": str(STATEMENT_TIMEOUT_MS),
    }
    return create_async_engine(
        _url(db, "asyncpg"),
        connect_args={"server_settings": server_settings},
        **pool_options(),
    )
