"""Cancelling on the server: fail-fast, timeouts, abandoned futures, STATEMENT_TIMEOUT, SQLite."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import sqlalchemy as sa
from django.test import TransactionTestCase, override_settings

import parallelq
from parallelq import get_engine, parallel, session, submit
from tests.base import PostgresTestCase, sleep

LONG_SLEEP = "pg_sleep(10"


def fail_soon():
    time.sleep(0.3)  # the sibling's pg_sleep has begun by then
    raise ValueError("panel failed")


class FailFastTests(PostgresTestCase):
    def test_a_failing_sibling_stops_a_long_query_on_the_server(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaisesMessage(ValueError, "panel failed"):
            parallel(lambda: sleep(10), fail_soon)
        self.assertLess(time.monotonic() - started, 2)
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 2))

    def test_parallel_returns_before_the_scope_ends(self):
        with parallelq.scope():
            started = time.monotonic()
            with self.assertRaises(ValueError):
                parallel(lambda: sleep(10), fail_soon)
            self.assertLess(time.monotonic() - started, 2)
            self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 2))
            self.assertEqual(parallel(lambda: sleep(0.01)), [0.01])

    def test_the_failing_tasks_error_wins_over_the_cancellations_it_causes(self):
        # The cancelled sibling comes first in the arguments and fails too, with
        # QueryCanceled; the caller must still get the error that started it all.
        def boom():
            time.sleep(0.02)  # the sibling's statement is running by now
            raise ValueError("boom")

        def calls(errors):
            with parallelq.scope():
                for _ in range(30):
                    try:
                        parallel(lambda: sleep(1), boom)
                    except Exception as exc:
                        errors.append(type(exc).__name__)

        errors: list[str] = []
        threads = [threading.Thread(target=calls, args=(errors,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        self.assertEqual(errors, ["ValueError"] * 120)

    def test_timeout_stops_the_query_on_the_server(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaises(parallelq.Timeout):
            parallel(lambda: sleep(10), timeout=0.5)
        self.assertLess(time.monotonic() - started, 2)
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 2))
        self.assertEqual(get_engine().pool.checkedout(), 0)

    @override_settings(PARALLELQ={"ENABLED": False})
    def test_timeout_stops_a_query_run_in_the_callers_thread(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaisesMessage(parallelq.Timeout, "slow"):
            parallel(slow=lambda: sleep(10), never=lambda: 1, timeout=0.5)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(self.running(LONG_SLEEP), [])

    def test_timeout_stops_a_nested_query(self):
        def outer():
            return parallel(lambda: sleep(10), timeout=0.5)

        started = time.monotonic()
        with parallelq.scope(), self.assertRaises(parallelq.Timeout):
            parallel(outer)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(self.running(LONG_SLEEP), [])

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})
    def test_a_task_waiting_for_a_connection_stops_when_its_timeout_passes(self):
        # The one connection is busy, so the task runs in the caller's thread and
        # waits for it; the timeout ends the wait, not the connection's return.
        held = get_engine().connect()
        returned = threading.Timer(3, held.close)
        returned.start()
        started = time.monotonic()
        try:
            with parallelq.scope(), self.assertRaises(parallelq.Timeout):
                parallel(lambda: sleep(10), timeout=0.2)
            self.assertLess(time.monotonic() - started, 1)
        finally:
            returned.cancel()
            held.close()
        self.assertEqual(self.running(LONG_SLEEP), [])
        self.assertEqual(get_engine().pool.checkedout(), 0)

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})
    def test_cancelling_a_task_that_waits_for_a_connection_ends_its_wait(self):
        # submit() runs the task on a worker even with no connection idle; the
        # worker waits for one until the task is cancelled, not pool_timeout.
        held = get_engine().connect()
        try:
            with parallelq.scope():
                future = submit(lambda: sleep(10))
                self.assertTrue(self.wait_for(future.running, 2))
                time.sleep(0.1)  # into its wait for the connection
                self.assertFalse(future.cancel())  # running: it cannot be un-run
                error = future.exception(timeout=1)
        finally:
            held.close()
        self.assertIsInstance(error, parallelq.ParallelQueryError)
        self.assertIn("was cancelled", str(error))
        self.assertEqual(self.running(LONG_SLEEP), [])
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def parallel_in_a_scope_closed_after(self, seconds: float, *calls: Any, **kw: Any) -> list:
        """Call parallel(*calls, **kw) in a thread whose scope is closed from another.

        Returns its results, or a list of the exception it raised; fails the
        test if it is not back within 3 s.
        """
        outcome: list = []

        def request():
            with parallelq.scope() as active:
                threading.Timer(seconds, active.close).start()
                try:
                    outcome.extend(parallel(*calls, **kw))
                except BaseException as exc:  # noqa: BLE001 - the test reports it
                    outcome.append(exc)

        caller = threading.Thread(target=request, daemon=True)
        started = time.monotonic()
        caller.start()
        caller.join(timeout=5)
        self.assertFalse(caller.is_alive(), "parallel() still waits for a task that never runs")
        self.assertLess(time.monotonic() - started, 3)
        return outcome

    @override_settings(PARALLELQ={"MAX_WORKERS": 1, "TIMEOUT": None})
    def test_a_caller_waiting_with_no_timeout_wakes_when_its_scope_is_torn_down(self):
        # The queued task never starts: its Future is cancelled, never settled, and
        # its place in the results says so.
        outcome = self.parallel_in_a_scope_closed_after(
            0.3, lambda: sleep(10), lambda: sleep(10), return_exceptions=True
        )
        self.assertEqual(len(outcome), 2, outcome)
        self.assertIsInstance(outcome[0], sa.exc.DBAPIError)  # its statement, cancelled
        self.assertIsInstance(outcome[1], parallelq.ParallelQueryError)
        self.assertIn("Task '#1 ", str(outcome[1]))
        self.assertIn("never ran: its scope was closed", str(outcome[1]))
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 2))

    @override_settings(PARALLELQ={"MAX_WORKERS": 1, "TIMEOUT": None})
    def test_a_task_its_closed_scope_never_started_raises_an_error_that_says_so(self):
        # The running task sends no statement, so nothing fails but the queued one.
        outcome = self.parallel_in_a_scope_closed_after(
            0.3, lambda: time.sleep(0.6), lambda: sleep(10)
        )
        self.assertEqual(len(outcome), 1, outcome)
        self.assertIsInstance(outcome[0], parallelq.ParallelQueryError)
        self.assertIn("Task '#1 ", str(outcome[0]))
        self.assertIn("never ran: its scope was closed", str(outcome[0]))


class AbandonedFutureTests(PostgresTestCase):
    def test_cancelling_a_running_future_stops_its_query(self):
        with parallelq.scope():
            future = submit(sleep, 10)
            self.assertTrue(self.wait_for(lambda: self.running(LONG_SLEEP), 5))
            started = time.monotonic()
            self.assertFalse(future.cancel())  # it ran, so it cannot be un-run
            self.assertIsInstance(future.exception(timeout=5), sa.exc.OperationalError)
            self.assertLess(time.monotonic() - started, 2)
            self.assertEqual(self.running(LONG_SLEEP), [])

    def test_a_cancelled_task_runs_no_further_statement(self):
        ran = []

        def two_statements():
            sleep(10)
            ran.append("second")
            sleep(0.01)

        with parallelq.scope():
            future = submit(lambda: (_ignore_errors(two_statements), sleep(0.01)))
            self.assertTrue(self.wait_for(lambda: self.running(LONG_SLEEP), 5))
            future.cancel()
            self.assertIsInstance(future.exception(timeout=5), parallelq.ParallelQueryError)
        self.assertIn("was cancelled", str(future.exception()))


def _ignore_errors(fn):
    with contextlib.suppress(sa.exc.DBAPIError):
        fn()


class StatementTimeoutTests(PostgresTestCase):
    @override_settings(PARALLELQ={"STATEMENT_TIMEOUT": 0.3})
    def test_the_server_stops_a_statement_past_statement_timeout(self):
        started = time.monotonic()
        with parallelq.scope(), self.assertRaisesMessage(sa.exc.OperationalError, "timeout"):
            parallel(lambda: sleep(10))
        self.assertLess(time.monotonic() - started, 2)

    @override_settings(PARALLELQ={"STATEMENT_TIMEOUT": 2})
    def test_statements_within_statement_timeout_run(self):
        with parallelq.scope():
            self.assertEqual(parallel(lambda: sleep(0.1)), [0.1])
            self.assertEqual(session.execute(sa.text("SHOW statement_timeout")).scalar(), "2s")


# Counts to 10**9 in SQL: long enough to need an interrupt, no sleep function.
COUNT_FOREVER = sa.text(
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
    "SELECT count(*) FROM c"
)


class SqliteInterruptTests(TransactionTestCase):
    databases = {"default"}

    def test_timeout_interrupts_a_sqlite_statement(self):
        tmp = tempfile.mkdtemp(prefix="parallelq-cancel-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        path = os.path.join(tmp, "cancel.sqlite3")
        with override_settings(PARALLELQ={"DATABASE_URL": f"sqlite:///{path}"}):
            started = time.monotonic()
            with parallelq.scope(), self.assertRaises(parallelq.Timeout):
                parallel(lambda: session.execute(COUNT_FOREVER).scalar(), timeout=0.5)
            self.assertLess(time.monotonic() - started, 2)
            # Teardown waited for the interrupted task: its connection is back.
            self.assertEqual(get_engine().pool.checkedout(), 0)
