"""Through a real PgBouncer in transaction pooling mode: fan-out, cancel, limits, no leaks.

PgBouncer lends server connections round robin here (tests/pgbouncer.py), so a
client's transactions land on different server connections.
"""

from __future__ import annotations

import os
import time
import unittest
from typing import Any

import psycopg2
import sqlalchemy as sa
from django.db import connection
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

import parallelq
from parallelq import get_engine, parallel, session
from parallelq.engine import dispose_engine
from tests import pgbouncer
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.models import Note
from tests.test_cancel import LONG_SLEEP, fail_soon

QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout or a cancel
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A process that fans out three 30 s sleeps through PgBouncer, to be killed.
def sleeps_view(request):
    """Hold the request's Session in a transaction while five tasks sleep ?s= seconds each."""
    seconds = float(request.GET.get("s", "0.01"))
    own = backend_pid()
    return JsonResponse({"own": own, "tasks": parallel(*[lambda: sleep(seconds)] * 5)})


urlpatterns = [path("sleeps/", sleeps_view)]


def sqlstate(error: BaseException) -> str | None:
    return getattr(getattr(error, "orig", None), "pgcode", None)


def start_pgbouncer(pool_size: int = 20) -> pgbouncer.PgBouncer:
    """Start a PgBouncer in front of the test database; skip the test without one (not on CI)."""
    try:
        return pgbouncer.PgBouncer(connection.settings_dict, pool_size=pool_size)
    except pgbouncer.Unavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        raise unittest.SkipTest(f"PgBouncer is not available: {exc}") from exc


class PgBouncerTestCase(PostgresTestCase):
    """parallelq's Engine through a PgBouncer of the class's own, TRANSACTION_POOLING on."""

    bouncer: pgbouncer.PgBouncer

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.bouncer = start_pgbouncer()
        # Its server connections must be gone before Django drops the test database.
        cls.addClassCleanup(cls.bouncer.stop)
        cls.addClassCleanup(dispose_engine)

    def setUp(self) -> None:
        # Before the tables are made, so that they are made and dropped through PgBouncer too.
        through = override_settings(PARALLELQ=self.conf())
        through.enable()
        self.addCleanup(through.disable)
        super().setUp()

    def conf(self, **extra: Any) -> dict[str, Any]:
        """Return PARALLELQ for the Engine through PgBouncer, with `extra` keys."""
        url = self.bouncer.url(connection.settings_dict["NAME"])
        return {"DATABASE_URL": url, "TRANSACTION_POOLING": True, **extra}

    def server_connections(self) -> list[tuple[int, str, str]]:
        """Return (pid, state, query) of PgBouncer's server connections to the test database."""
        return self.other_backends()


class FanOutTests(PgBouncerTestCase):
    def test_five_sleeps_run_at_once(self):
        def nap():
            sleep(0.3)
            return backend_pid()

        with parallelq.scope():
            parallel(*[lambda: sleep(0.1)] * 5)  # warm: connections to PgBouncer and the server
            started = time.monotonic()
            pids = parallel(*[nap] * 5)
            elapsed = time.monotonic() - started
        self.assertLess(elapsed, 0.6)
        self.assertEqual(len(set(pids)), 5, pids)

    def test_a_failing_sibling_stops_a_long_query_on_the_server(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaisesMessage(ValueError, "panel failed"):
            parallel(lambda: sleep(10), fail_soon)
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
        self.assertLess(time.monotonic() - started, 3)

    def test_a_timeout_stops_the_query_on_the_server(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaises(parallelq.Timeout):
            parallel(lambda: sleep(10), timeout=0.5)
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(get_engine().pool.checkedout(), 0)


class StatementTimeoutTests(PgBouncerTestCase):
    def test_the_limit_holds_in_every_transaction_whichever_server_connection_runs_it(self):
        def three_transactions():
            seen = []
            for _ in range(3):
                client = id(session.connection().connection.dbapi_connection)
                pid = backend_pid()
                try:
                    sleep(1)
                    seen.append((client, pid, None))
                except sa.exc.OperationalError as exc:
                    seen.append((client, pid, sqlstate(exc)))
                session.rollback()  # the next statement begins a new transaction
            return seen

        with self.settings(PARALLELQ=self.conf(STATEMENT_TIMEOUT=0.3)), parallelq.scope():
            parallel(*[lambda: sleep(0.1)] * 8)  # server connections to spare
            runs = [seen for task in parallel(*[three_transactions] * 2) for seen in task]
        self.assertEqual([state for _, _, state in runs], [QUERY_CANCELED] * 6, runs)
        servers: dict[int, set[int]] = {}
        for client, pid, _ in runs:
            servers.setdefault(client, set()).add(pid)
        self.assertGreater(max(map(len, servers.values())), 1, "no client changed server")

    def test_the_limits_reach_no_other_client(self):
        def show_limits():
            sleep(0.05)
            return session.execute(sa.text("SHOW statement_timeout")).scalar_one()

        with self.settings(PARALLELQ=self.conf(STATEMENT_TIMEOUT=30)), parallelq.scope():
            self.assertEqual(parallel(*[show_limits] * 5), ["30s"] * 5)
        # Another client of PgBouncer, on the server connections parallelq's tasks used.
        other = psycopg2.connect(self.bouncer.url(connection.settings_dict["NAME"]))
        self.addCleanup(other.close)
        seen = set()
        for _ in range(10):
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_backend_pid(), current_setting('statement_timeout'), "
                    "current_setting('client_connection_check_interval')"
                )
                pid, timeout, interval = cursor.fetchone()
            other.rollback()
            seen.add(pid)
            self.assertEqual((timeout, interval), ("0", "0"))
        self.assertGreater(len(seen), 1)

    def test_a_statement_timeout_in_autocommit_is_an_error_that_says_what_to_do(self):
        autocommit = {"ENGINE_OPTIONS": {"isolation_level": "AUTOCOMMIT"}}
        one = sa.text("SELECT 1")
        with self.settings(PARALLELQ=self.conf(STATEMENT_TIMEOUT=5, **autocommit)):
            with (
                parallelq.scope(),
                self.assertRaisesMessage(
                    parallelq.ParallelQueryError,
                    "PARALLELQ['STATEMENT_TIMEOUT'] cannot hold on a connection in autocommit",
                ),
            ):
                parallel(lambda: session.execute(one).scalar_one())
            self.assertEqual(get_engine().pool.checkedout(), 0)
        with self.settings(PARALLELQ=self.conf(**autocommit)), parallelq.scope():
            self.assertEqual(parallel(lambda: session.execute(one).scalar_one()), [1])


class CommittedSettingTests(PgBouncerTestCase):
    def test_a_session_setting_a_task_commits_reaches_no_other_client(self):
        def commit_tenant(text: str) -> int:
            session.execute(sa.text("SELECT set_config('app.tenant', 'A', false)"))
            session.add(Note(text=text))
            pid = backend_pid()
            session.commit()
            return pid

        with parallelq.scope():
            tainted = set(parallel(*[lambda i=i: commit_tenant(f"n{i}") for i in range(4)]))
            texts = session.scalars(sa.select(Note.text).order_by(Note.text)).all()
        self.assertEqual(texts, ["n0", "n1", "n2", "n3"])  # the commits went through
        other = psycopg2.connect(self.bouncer.url(connection.settings_dict["NAME"]))
        self.addCleanup(other.close)
        seen = set()
        for _ in range(30):  # round robin: every server connection, several times
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), current_setting('app.tenant', true)")
                pid, tenant = cursor.fetchone()
            other.rollback()
            seen.add(pid)
            self.assertIn(tenant, ("", None))
        self.assertLessEqual(tainted, seen)


class SessionSettingTests(PostgresTestCase):
    """Without TRANSACTION_POOLING, as a session-level SET does: what the setting is for."""

    def test_a_limit_set_per_connection_misses_transactions_and_reaches_other_clients(self):
        bouncer = start_pgbouncer()  # its own: the limit it leaks ends with it
        self.addCleanup(bouncer.stop)
        self.addCleanup(dispose_engine)
        url = bouncer.url(connection.settings_dict["NAME"])
        # Three server connections, then one client whose transactions go round them.
        held = [psycopg2.connect(url) for _ in range(3)]
        for conn in held:
            conn.cursor().execute("SELECT 1")
        for conn in held:
            conn.rollback()  # PgBouncer closes the server connection of a client that leaves in one
            conn.close()
        conf = {"DATABASE_URL": url, "STATEMENT_TIMEOUT": 30}
        with self.settings(PARALLELQ=conf), parallelq.scope():
            shown = [
                parallel(lambda: session.scalar(sa.text("SHOW statement_timeout")))[0]
                for _ in range(6)
            ]
        self.assertIn("30s", shown)
        self.assertIn("0", shown)


class RequestTests(PgBouncerTestCase):
    @override_settings(ROOT_URLCONF=__name__)
    def test_many_requests_leave_no_transaction_open_and_no_more_server_connections(self):
        for _ in range(3):  # the request and its 5 tasks overlap: 6 server connections
            self.assertEqual(self.client.get("/sleeps/", {"s": "0.2"}).status_code, 200)
        before = self.server_connections()
        for _ in range(200):
            response = self.client.get("/sleeps/")
            self.assertEqual(response.json()["tasks"], [0.01] * 5)
        after = self.server_connections()
        self.assertEqual([b for b in after if b[1] != "idle"], [])
        self.assertLessEqual(len(after), len(before), (before, after))
        self.assertEqual(get_engine().pool.checkedout(), 0)


class KilledProcessTests(PgBouncerTestCase):
    def test_a_killed_process_leaves_no_statement_running(self):
        # PgBouncer closes the server connection of a client that dies in a
        # transaction; the server notices within client_connection_check_interval.
        self.assert_killed_process_leaves_no_statement_running({**self.conf(), "MAX_WORKERS": 4})
