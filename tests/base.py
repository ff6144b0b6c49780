"""Test cases on the real database: tables made and dropped, the pool checked after each test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from django.conf import settings
from django.db import connection
from django.test import TransactionTestCase

from parallelq import get_engine, session
from tests.models import Base

ROOT = Path(__file__).resolve().parent.parent

# A process whose parallel() runs three 30 s sleeps: argv[1] the database's Django
# settings, argv[2] its PARALLELQ, both as JSON.
SLEEPING_PROCESS = """
import json, sys
import django
from django.conf import settings
db, conf = json.loads(sys.argv[1]), json.loads(sys.argv[2])
settings.configure(INSTALLED_APPS=["parallelq"], DATABASES={"default": db}, PARALLELQ=conf)
django.setup()
import sqlalchemy as sa
import parallelq
with parallelq.scope():
    parallelq.parallel(*[lambda: parallelq.session.execute(sa.text("SELECT pg_sleep(30)"))] * 3)
"""


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

    def assert_killed_process_leaves_no_statement_running(self, conf: dict[str, Any]) -> None:
        """Kill a process while its three tasks sleep; assert the server ends them within 5 s.

        The process runs parallel() with PARALLELQ `conf` on the test database.
        """
        keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        db = {k: connection.settings_dict[k] for k in keys}
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        process = subprocess.Popen(
            [sys.executable, "-c", SLEEPING_PROCESS, json.dumps(db), json.dumps(conf)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(process.stderr.close)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        started = self.wait_for(lambda: len(self.running("pg_sleep(30)")) == 3, 15)
        self.assertTrue(
            started, process.stderr.read().decode() if process.poll() is not None else ""
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
        self.assertTrue(self.wait_for(lambda: not self.running("pg_sleep(30)"), 5))

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
