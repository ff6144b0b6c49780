"""The run's PostgreSQL: a throwaway cluster (tests.pg), and a database created for the run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from bench.compare.config import STATEMENT_TIMEOUT_MS
from tests import pg


def connect(db: dict[str, Any], name: str | None = None, app: str = "bench-admin") -> Any:
    """Open an autocommit psycopg2 connection whose statements time out."""
    return pg.connect(db, name, statement_timeout_ms=STATEMENT_TIMEOUT_MS, application_name=app)


@contextlib.contextmanager
def bench_database() -> Iterator[dict[str, Any]]:
    """Start the throwaway cluster and yield DATABASES['default'] for a new database.

    The database is dropped on exit; tests.pg stops the cluster it started when
    the process exits (PARALLELQ_TEST_DATABASE_URL names a server to use instead).
    """
    base = pg.database_settings()
    admin = base["NAME"] if os.environ.get("PARALLELQ_TEST_DATABASE_URL") else "postgres"
    name = f"parallelq_bench_{os.getpid()}"
    _admin_execute(base, admin, f'CREATE DATABASE "{name}"')
    try:
        yield {**base, "NAME": name}
    finally:
        _admin_execute(base, admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_execute(db: dict[str, Any], admin: str, sql: str) -> None:
    conn = connect(db, admin)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def server_version(db: dict[str, Any]) -> str:
    """Return the server's version string, e.g. '15.18 (Debian 15.18-0+deb12u1)'."""
    conn = connect(db)
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])
    finally:
        conn.close()
