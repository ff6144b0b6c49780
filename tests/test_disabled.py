"""ENABLED=False: tasks run one by one in the caller's thread, each still on its own Session."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import parallel, session, submit
from tests.base import PostgresTestCase, sleep
from tests.models import Note, Writer

DISABLED = override_settings(PARALLELQ={"ENABLED": False})


def count_notes():
    return session.execute(sa.select(sa.func.count()).select_from(Note)).scalar_one()


def note_texts():
    return session.scalars(sa.select(Note.text).order_by(Note.text)).all()


def writer_names():
    return [(w.name, len(w.notes)) for w in session.scalars(sa.select(Writer).order_by(Writer.id))]


def arithmetic():
    return session.execute(sa.text("SELECT 6 * 7")).scalar_one()


CALLABLES = [count_notes, note_texts, writer_names, arithmetic, lambda: sleep(0.05), lambda: None]


class DisabledTests(PostgresTestCase):
    def setUp(self):
        super().setUp()
        with parallelq.scope():
            session.add(Writer(name="Le Guin", notes=[Note(text="b"), Note(text="a")]))
            session.add(Note(text="c"))
            session.commit()

    @DISABLED
    def test_tasks_run_in_the_callers_thread(self):
        with parallelq.scope():
            threads = parallel(threading.get_ident, threading.get_ident)
            submitted = submit(threading.get_ident).result(timeout=0)
        self.assertEqual(threads, [threading.get_ident()] * 2)
        self.assertEqual(submitted, threading.get_ident())

    @DISABLED
    def test_tasks_run_one_after_another_in_order(self):
        order = []

        def task(i):
            order.append(("start", i))
            sleep(0.2)
            order.append(("end", i))
            return i

        with parallelq.scope():
            started = time.perf_counter()
            results = parallel(*[lambda i=i: task(i) for i in range(3)])
            elapsed = time.perf_counter() - started
        self.assertEqual(results, [0, 1, 2])
        self.assertEqual(order, [(edge, i) for i in range(3) for edge in ("start", "end")])
        self.assertGreaterEqual(elapsed, 0.6)

    @DISABLED
    def test_each_task_still_has_its_own_session(self):
        # Session.hash_key is unique per Session, unlike id() of a collected one.
        def key():
            return session().hash_key

        with parallelq.scope() as s:
            task_sessions = parallel(key, key, key)
            submitted = submit(key).result(timeout=0)
            caller_session = session()
            self.assertIs(caller_session, s.session)
        keys = [*task_sessions, submitted]
        self.assertEqual(len(set(keys)), 4)
        self.assertNotIn(caller_session.hash_key, keys)

    @DISABLED
    def test_callers_session_is_untouched_by_the_tasks(self):
        def add_and_commit():
            session.add(Note(text="from a task"))
            session.commit()

        with parallelq.scope() as s:
            self.assertFalse(s.session.in_transaction())
            parallel(add_and_commit)
            self.assertFalse(s.session.in_transaction())
            self.assertIn("from a task", note_texts())

    def test_results_equal_the_enabled_results(self):
        with parallelq.scope():
            enabled = parallel(*CALLABLES)
            enabled_named = parallel(**{f.__name__: f for f in CALLABLES[:4]})
        with DISABLED, parallelq.scope():
            disabled = parallel(*CALLABLES)
            disabled_named = parallel(**{f.__name__: f for f in CALLABLES[:4]})
        self.assertEqual(enabled, [3, ["a", "b", "c"], [("Le Guin", 2)], 42, 0.05, None])
        self.assertEqual(disabled, enabled)
        self.assertEqual(disabled_named, enabled_named)

    @DISABLED
    def test_exceptions_propagate_with_their_type(self):
        class InventoryError(Exception):
            pass

        def fail():
            raise InventoryError("shelf 9 is empty")

        with parallelq.scope():
            with self.assertRaisesMessage(InventoryError, "shelf 9 is empty"):
                parallel(lambda: 1, fail)
            with self.assertRaises(sa.exc.ProgrammingError):
                parallel(lambda: session.execute(sa.text("SELECT * FROM no_such_table")))
            # The scope is still usable after a task failed.
            self.assertEqual(parallel(arithmetic), [42])

    @DISABLED
    def test_tasks_after_a_failing_one_are_not_run(self):
        ran = []

        def fail():
            raise ValueError("first")

        with parallelq.scope(), self.assertRaises(ValueError):
            parallel(lambda: ran.append("before"), fail, lambda: ran.append("after"))
        self.assertEqual(ran, ["before"])

    @DISABLED
    def test_return_exceptions_puts_them_in_place(self):
        with parallelq.scope():
            results = parallel(lambda: 1, lambda: 1 / 0, arithmetic, return_exceptions=True)
        self.assertEqual(results[0], 1)
        self.assertIsInstance(results[1], ZeroDivisionError)
        self.assertEqual(results[2], 42)

    @DISABLED
    def test_stats_count_the_tasks_run_one_by_one(self):
        with parallelq.scope() as opened:
            parallel(lambda: sleep(0.1), lambda: sleep(0.1))
        self.assertEqual(opened.stats.tasks, 2)
        self.assertEqual(opened.stats.max_concurrency, 1)
        self.assertGreaterEqual(opened.stats.db_seconds, 0.2)
        self.assertGreaterEqual(opened.stats.wall_seconds, opened.stats.db_seconds * 0.9)

    @DISABLED
    def test_submit_returns_a_done_future(self):
        with parallelq.scope():
            future = submit(arithmetic)
            self.assertTrue(future.done())
            self.assertEqual(future.result(timeout=0), 42)
            failed = submit(lambda: 1 / 0)
            self.assertTrue(failed.done())
            self.assertIsInstance(failed.exception(timeout=0), ZeroDivisionError)

    @DISABLED
    def test_no_connection_is_left_checked_out(self):
        with parallelq.scope():
            parallel(arithmetic, count_notes)
            submit(arithmetic)
        self.assertEqual(parallelq.get_engine().pool.checkedout(), 0)
