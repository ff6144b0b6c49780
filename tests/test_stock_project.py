"""A project with no TEST_RUNNER: `manage.py test` and pytest-django end cleanly, database dropped.

tests/stockproject is such a project. Its tests run here in subprocesses on the
suite's PostgreSQL server, each with a database name of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.db import connection

from tests.base import PostgresTestCase, database_url

PROJECT = Path(__file__).resolve().parent / "stockproject"


class StockProjectTests(PostgresTestCase):
    def run_project(
        self, name: str, *command: str, url: str = "", **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` in the project on PostgreSQL database `name`, or on `url`."""
        self.addCleanup(self.drop, f"test_{name}")
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        url = url or database_url("postgresql", database=name).render_as_string(False)
        return subprocess.run(
            [sys.executable, *command],
            cwd=PROJECT,
            env={**environ, "STOCK_DATABASE_URL": url, **env},
            stdin=subprocess.DEVNULL,  # a prompt to delete a test database left behind fails
            capture_output=True,
            text=True,
            timeout=300,
        )

    def databases_named(self, name: str) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname = %s", [name])
            return [row[0] for row in cursor.fetchall()]

    def drop(self, name: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')

    def assertRanCleanly(self, run: subprocess.CompletedProcess[str], name: str) -> None:
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertEqual(self.databases_named(f"test_{name}"), [])

    def test_manage_py_test_drops_the_test_database(self):
        run = self.run_project("pq_stock_django", "manage.py", "test", "shop")
        self.assertRanCleanly(run, "pq_stock_django")
        self.assertIn("Ran 3 tests", run.stderr)

    def test_pytest_django_drops_the_test_database(self):
        run = self.run_project("pq_stock_pytest", "-m", "pytest", "-p", "no:cacheprovider")
        self.assertRanCleanly(run, "pq_stock_pytest")
        self.assertIn("6 passed", run.stdout)

    def test_on_sqlite_too(self):
        with tempfile.TemporaryDirectory(prefix="parallelq-stock-") as tmp:
            url = f"sqlite:///{tmp}/stock.sqlite3"  # its test database is in memory
            run = self.run_project("pq_stock_sqlite", "manage.py", "test", "shop", url=url)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("Ran 3 tests", run.stderr)

    def test_without_parallelqs_receiver_the_drop_fails(self):
        # What a new user met: the pool's connections keep the test database open.
        run = self.run_project(
            "pq_stock_control", "manage.py", "test", "shop.tests.ParallelTests", STOCK_CONTROL="1"
        )
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("is being accessed by other users", run.stderr)
        self.assertEqual(self.databases_named("test_pq_stock_control"), ["test_pq_stock_control"])
