"""Test cases on the real database: tables made and dropped, the pool checked after each test."""

from __future__ import annotations

import time
import unittest
from collections.abc import Callable

import sqlalchemy as sa
from django.conf import settings
from django.db import connection
from django.test import TransactionTestCase

from parallelq import get_engine, session
from tests.models import Base


class ParallelqTestCase(TransactionTestCase):
    """Create the test tables before each test and drop them after.

    TransactionTestCase, not TestCase: SQLAlchemy's connections cannot see rows
    inside the transaction TestCase keeps open on Django's connection.
    """

    databases = {"default"}

    def setUp(self) -> None:
        super().setUp()
        Base.metadata.create_all(get_engine())
        self.addCleanup(self._drop_tables)

    def _drop_tables(self) -> None:
        engine = get_engine()
        self.assertEqual(engine.pool.checkedout(), 0, "a connection was left checked out")
        Base.metadata.drop_all(engine)


class PostgresTestCase(ParallelqTestCase):
    """A test that needs PostgreSQL: skipped with the reason when it is missing (never on CI)."""

    @classmethod
    def setUpClass(cls) -> None:
        if settings.POSTGRES_UNAVAILABLE:
            raise unittest.SkipTest(settings.POSTGRES_UNAVAILABLE)
        super().setUpClass()

    def other_backends(self) -> list[tuple[int, str, str]]:
        """Return (pid, state, query) of every client backend on the test database but Django's.

        Autovacuum workers are left out: the tables' churn may start one at any time.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return list(cursor.fetchall())

    def running(self, fragment: str) -> list[int]:
        """Return the pids of backends running a statement that contains `fragment`."""
        backends = self.other_backends()
        return [pid for pid, state, query in backends if state == "active" and fragment in query]

    def wait_for(self, condition: Callable[[], object], seconds: float) -> bool:
        """Poll `condition` until it is true or `seconds` pass; return whether it came true."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def database_url(driver: str = "postgresql+psycopg2", database: str | None = None) -> sa.URL:
    """Return a SQLAlchemy URL of the test database (or of `database` on its server)."""
    db = connection.settings_dict
    return sa.URL.create(
        driver,
        username=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=int(db["PORT"]) if db["PORT"] else None,
        database=database or db["NAME"],
    )


def backend_pid() -> int:
    """Return the PostgreSQL backend pid of the current Session's connection."""
    return int(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def sleep(seconds: float) -> float:
    """Make the server wait `seconds` on the current Session; return `seconds`."""
    session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})
    return seconds
