"""Test cases that tests/test_testing.py runs itself, then checks the database after.

Not named test*.py, so the runner does not collect them on their own: what
they leave behind is checked from outside their transaction.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from django.db import connection, transaction
from django.test import TestCase

import parallelq
from parallelq import parallel, session, submit
from parallelq import testing as pq_testing
from tests.models import Note
from tests.shelf.models import Shelf


def shelves() -> list[str]:
    """Return the shelves' names, read with Django's ORM."""
    return sorted(Shelf.objects.values_list("name", flat=True))


def notes() -> list[str]:
    """Return the notes' texts, read on the current parallelq Session."""
    return sorted(session.scalars(sa.select(Note.text)).all())


def add_note(text: str, *, commit: bool) -> int:
    """Add a note on the current Session; return the thread that did."""
    session.add(Note(text=text))
    if commit:
        session.commit()
    else:
        session.flush()
    return threading.get_ident()


class SeesItsOwnRows(pq_testing.TestCase):
    """Tasks see what the test wrote with Django's ORM and with SQLAlchemy."""

    def setUp(self):
        Shelf.objects.create(name="orm")
        with parallelq.scope():
            add_note("sqlalchemy", commit=True)

    def test_parallel_sees_the_tests_rows(self):
        with parallelq.scope():
            seen = parallel(orm=shelves, sqlalchemy=notes)
        self.assertEqual(seen, {"orm": ["orm"], "sqlalchemy": ["sqlalchemy"]})

    def test_submit_sees_the_tests_rows(self):
        with parallelq.scope():
            orm, sqlalchemy = submit(shelves), submit(notes)
            self.assertEqual((orm.result(), sqlalchemy.result()), (["orm"], ["sqlalchemy"]))

    def test_tasks_run_in_the_tests_thread(self):
        with parallelq.scope():
            threads = parallel(lambda: add_note("a", commit=True), threading.get_ident)
        self.assertEqual(threads, [threading.get_ident()] * 2)

    def test_a_committed_task_write_is_seen_and_an_uncommitted_one_is_not(self):
        with parallelq.scope():
            parallel(lambda: add_note("kept", commit=True))
            with self.assertLogs("parallelq", "WARNING"):
                parallel(lambda: add_note("dropped", commit=False))
            self.assertEqual(parallel(notes), [["kept", "sqlalchemy"]])
            self.assertEqual(notes(), ["kept", "sqlalchemy"])  # the scope's own Session too

    def test_tasks_write_with_djangos_orm_too(self):
        with parallelq.scope():
            parallel(lambda: Shelf.objects.create(name="task"))
        self.assertEqual(shelves(), ["orm", "task"])

    def test_tasks_run_one_at_a_time(self):
        with parallelq.scope() as scope:
            parallel(notes, notes, notes)
        self.assertEqual((scope.stats.tasks, scope.stats.max_concurrency), (3, 1))

    def test_a_timeout_stops_a_task_at_its_next_statement(self):
        ran = []

        def sleep_twice():
            for step in ("first", "second"):
                session.execute(sa.text("SELECT pg_sleep(0.3)"))
                ran.append(step)

        started = time.monotonic()
        with parallelq.scope(), self.assertRaises(parallelq.Timeout):
            parallel(sleep_twice, timeout=0.05)
        self.assertGreater(time.monotonic() - started, 0.25)  # not cancelled on the server
        self.assertEqual(ran, ["first"])
        self.assertEqual(shelves(), ["orm"])  # the test's transaction is fine

    def test_a_task_in_its_last_statement_at_the_timeout_returns_late(self):
        started = time.monotonic()
        with parallelq.scope():
            late = parallel(
                lambda: session.scalar(sa.text("SELECT 1 FROM pg_sleep(0.3)")), timeout=0.05
            )
        self.assertEqual(late, [1])
        self.assertGreater(time.monotonic() - started, 0.25)

    def test_get_engine_is_on_the_tests_connection(self):
        with parallelq.get_engine().connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            count = conn.execute(sa.select(sa.func.count()).select_from(Note)).scalar()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.assertEqual(pid, cursor.fetchone()[0])
        self.assertEqual(count, 1)


class PlainTestCase(TestCase):
    """Django's own TestCase: tasks run on pooled connections that cannot see the test's rows."""

    def setUp(self):
        Shelf.objects.create(name="orm")

    def test_tasks_do_not_see_the_tests_rows(self):
        with parallelq.scope():
            seen = parallel(orm=shelves, sqlalchemy=notes)
        self.assertEqual(seen, {"orm": [], "sqlalchemy": []})


class AcrossAtomicBlocks(pq_testing.TestCase):
    """A Session's savepoint and Django's atomic blocks need not nest."""

    def test_a_session_begun_inside_an_atomic_block_outlives_it(self):
        with self.assertLogs("parallelq", "WARNING"), parallelq.scope(), transaction.atomic():
            add_note("inside", commit=False)
        # Ending the Session rolled back to a savepoint the block had ended: the
        # test's transaction still works, and the block kept the note.
        self.assertEqual(shelves(), [])
        with parallelq.scope():
            self.assertEqual(notes(), ["inside"])

    def test_a_session_commits_inside_an_atomic_block_begun_after_it(self):
        with parallelq.scope():
            self.assertEqual(notes(), [])
            with transaction.atomic():
                Shelf.objects.create(name="x")
                add_note("committed", commit=True)
            self.assertEqual((shelves(), parallel(notes)), (["x"], [["committed"]]))

    def test_an_atomic_view_uses_the_requests_session(self):
        with parallelq.scope():
            add_note("before", commit=True)
        response = self.client.get("/atomic-notes/")  # the request's Session ends after the view
        self.assertEqual(response.json()["texts"], ["before"])
        self.assertEqual(shelves(), [])


class ConsistentInATest(pq_testing.TestCase):
    """consistent=True and using="replica" in a test: the tasks read the test's transaction."""

    def setUp(self):
        with parallelq.scope():
            add_note("sqlalchemy", commit=True)

    def test_consistent_tasks_read_the_tests_transaction_and_its_rows(self):
        began = sa.text("SELECT now(), pg_backend_pid()")  # now(): when the transaction began
        with parallelq.scope():
            *seen, stamp = parallel(
                notes, notes, lambda: tuple(session.execute(began).one()), consistent=True
            )
        with connection.cursor() as cursor:
            cursor.execute(began.text)
            self.assertEqual(stamp, cursor.fetchone())
        self.assertEqual(seen, [["sqlalchemy"]] * 2)

    def test_replica_tasks_read_the_tests_transaction_too(self):
        with parallelq.scope():
            seen = parallel(notes, parallelq.on_replica(notes), using="replica", consistent=True)
            self.assertEqual(submit(parallelq.on_replica(notes)).result(), ["sqlalchemy"])
        self.assertEqual(seen, [["sqlalchemy"]] * 2)
