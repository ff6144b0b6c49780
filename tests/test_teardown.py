"""Teardown: unsaved writes are warned about and rolled back, every Session ends, tasks stop."""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import wait

import sqlalchemy as sa
from django.test import override_settings
from sqlalchemy import orm

import parallelq
from parallelq import get_engine, parallel, session, submit
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.models import Note

INSERT = sa.text("INSERT INTO pq_test_note (text) VALUES ('x')")


def saved_texts() -> list[str]:
    """Return the notes' texts as a fresh Session, outside every scope, sees them."""
    with orm.Session(get_engine()) as db:
        return list(db.scalars(sa.select(Note.text).order_by(Note.id)))


def add_note(text: str, *, commit: bool = False, flush: bool = False) -> None:
    session.add(Note(text=text))
    if flush:
        session.flush()
    if commit:
        session.commit()


class UnsavedWriteTests(PostgresTestCase):
    def test_uncommitted_write_is_warned_and_rolled_back(self):
        with self.assertLogs("parallelq", "WARNING") as logs, parallelq.scope():
            parallel(add_pending=lambda: add_note("pending"))
        self.assertEqual(len(logs.output), 1)
        self.assertIn("Task 'add_pending' ended with uncommitted changes", logs.output[0])
        self.assertEqual(saved_texts(), [])

    def test_flushed_but_uncommitted_write_is_warned_and_rolled_back(self):
        with self.assertLogs("parallelq", "WARNING") as logs, parallelq.scope():
            parallel(add_flushed=lambda: add_note("flushed", flush=True))
        self.assertIn("Task 'add_flushed'", logs.output[0])
        self.assertEqual(saved_texts(), [])

    def test_committed_write_is_kept_without_a_warning(self):
        with self.assertNoLogs("parallelq", "WARNING"), parallelq.scope():
            parallel(add_kept=lambda: add_note("kept", commit=True))
        self.assertEqual(saved_texts(), ["kept"])

    def test_uncommitted_raw_sql_write_is_warned_and_rolled_back(self):
        with self.assertLogs("parallelq", "WARNING") as logs, parallelq.scope():
            parallel(raw_insert=lambda: session.execute(INSERT))
        self.assertIn("Task 'raw_insert' ended with uncommitted changes", logs.output[0])
        self.assertEqual(saved_texts(), [])

    def test_raw_read_only_statement_is_not_warned_about(self):
        with self.assertNoLogs("parallelq", "WARNING"), parallelq.scope():
            parallel(raw_read=lambda: session.execute(sa.text("SELECT pg_sleep(0.01)")))
            session.execute(sa.text("SELECT pg_sleep(0.01)"))

    def test_uncommitted_write_in_a_request_task_is_warned_and_rolled_back(self):
        with self.assertLogs("parallelq", "WARNING") as logs:
            self.assertEqual(self.client.get("/write/?text=lost").status_code, 200)
        self.assertEqual(len(logs.output), 1)
        self.assertIn("Task '#0 write.<locals>.add' ended with uncommitted", logs.output[0])
        self.assertEqual(self.client.get("/notes/").json()["texts"], [])

    def test_committed_write_in_a_request_task_is_kept_without_a_warning(self):
        with self.assertNoLogs("parallelq", "WARNING"):
            self.client.get("/write/?text=kept&commit=1")
        self.assertEqual(self.client.get("/notes/").json()["texts"], ["kept"])

    def test_pending_object_in_the_requests_session_is_warned_and_rolled_back(self):
        with self.assertLogs("parallelq", "WARNING") as logs:
            self.client.get("/write/?text=kept&commit=1&main=1")
        self.assertEqual(len(logs.output), 1)
        self.assertIn("the request's session ended with uncommitted changes", logs.output[0])
        self.assertEqual(saved_texts(), ["kept"])


class TeardownTests(PostgresTestCase):
    def idle_in_transaction(self) -> list[tuple[int, str, str]]:
        return [b for b in self.other_backends() if b[1] == "idle in transaction"]

    def running_sleeps(self) -> list[int]:
        return self.running("pg_sleep")

    def test_scope_exit_closes_every_session(self):
        with parallelq.scope() as opened:
            own = session()
            backend_pid()  # the scope's own Session now holds a transaction open
            futures = [submit(backend_pid) for _ in range(3)]
            parallel(lambda: sleep(0.05), lambda: sleep(0.05))
            wait(futures)
            self.assertEqual(len(self.idle_in_transaction()), 1)
            self.assertGreaterEqual(get_engine().pool.checkedout(), 1)
        self.assertTrue(opened.closed)
        self.assertFalse(own.in_transaction())
        self.assertEqual(get_engine().pool.checkedout(), 0)
        self.assertEqual(self.idle_in_transaction(), [])

    def test_running_statement_of_an_unawaited_future_is_cancelled_at_exit(self):
        with parallelq.scope():
            future = submit(sleep, 10)
            self.assertTrue(self.wait_for(self.running_sleeps, 3), "pg_sleep never started")
            started = time.monotonic()
        self.assertLess(time.monotonic() - started, 3)
        self.assertTrue(self.wait_for(lambda: not self.running_sleeps(), 2))
        self.assertTrue(future.done())
        self.assertIn("canceling statement", str(future.exception()))
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_unawaited_future_submitted_just_before_exit_does_not_delay_it(self):
        started = time.monotonic()
        with parallelq.scope():
            future = submit(sleep, 10)
        self.addCleanup(wait, [future], 15)  # before the tables go, even if this test fails
        self.assertLess(time.monotonic() - started, 3)
        self.assertTrue(self.wait_for(lambda: not self.running_sleeps(), 2))

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_queued_future_is_cancelled_at_exit_and_never_runs(self):
        ran = []

        def record():
            ran.append("queued")

        with parallelq.scope():
            first = submit(sleep, 0.3)
            queued = submit(record)
            self.assertFalse(queued.running())
        self.assertTrue(queued.cancelled())
        wait([first], 5)
        time.sleep(0.3)  # time enough for a wrongly started task to run
        self.assertEqual(ran, [])
        self.assertEqual(get_engine().pool.checkedout(), 0)


class AfterTeardownTests(PostgresTestCase):
    def test_parallel_after_scope_exit_raises_no_scope_error(self):
        with parallelq.scope():
            pass
        with self.assertRaisesMessage(parallelq.NoScopeError, "needs an active parallelq scope"):
            parallel(lambda: 1)

    def test_parallel_in_a_context_kept_from_a_torn_down_scope_raises_no_scope_error(self):
        # A thread started inside the scope carries such a context.
        with parallelq.scope() as opened:
            kept = contextvars.copy_context()
        self.assertTrue(opened.closed)
        ran = []
        with self.assertRaisesMessage(parallelq.NoScopeError, "after its parallelq scope was torn"):
            kept.run(parallel, lambda: ran.append(1))
        with self.assertRaises(parallelq.NoScopeError):
            kept.run(submit, ran.append, 2)
        with self.assertRaises(parallelq.NoScopeError):
            kept.run(lambda: opened.session)
        self.assertEqual(ran, [])

    def test_parallel_after_a_request_raises_no_scope_error(self):
        self.client.get("/notes/")
        with self.assertRaises(parallelq.NoScopeError):
            parallel(lambda: 1)
