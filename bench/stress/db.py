"""The run's own PostgreSQL database: create it, reach it outside Django, drop it."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from demo_project.bookstore import ensure_seeded
from parallelq import get_engine
from tests import pg

SOCKET_TIMEOUT = 20.0  # seconds, every HTTP and PostgreSQL socket
ROWS = sa.Table(
    "stress_write",
    sa.MetaData(),
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("written_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
OTHER_BACKENDS = (
    "FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def connect(db: dict[str, Any], name: str | None = None) -> Any:
    """Open an autocommit psycopg2 connection whose statements time out."""
    return pg.connect(db, name, statement_timeout_ms=int(SOCKET_TIMEOUT * 1000))


def create_database() -> dict[str, Any]:
    """Start (or reach) the PostgreSQL server and create a database for this run."""
    base = pg.database_settings()
    admin = base["NAME"] if os.environ.get("PARALLELQ_TEST_DATABASE_URL") else "postgres"
    name = f"parallelq_stress_{os.getpid()}"
    conn = connect(base, admin)
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return {**base, "NAME": name, "ADMIN_DB": admin}


def drop_database(db: dict[str, Any]) -> None:
    get_engine().dispose()  # PostgreSQL drops no database with open connections
    conn = connect(db, db["ADMIN_DB"])
    try:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
    finally:
        conn.close()


def prepare_schema() -> None:
    ensure_seeded()
    ROWS.metadata.create_all(get_engine())
