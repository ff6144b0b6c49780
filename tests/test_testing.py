"""parallelq.testing.TestCase: tasks see the test's rows, and all of it is rolled back."""

from __future__ import annotations

import threading
import unittest

import sqlalchemy as sa
from django.db import connection, transaction
from django.test import SimpleTestCase
from django.test.runner import DiscoverRunner

import parallelq
from parallelq import parallel, session
from parallelq.exceptions import ParallelQueryError
from parallelq.sharing import shared_connection
from tests import shared_cases
from tests.base import PostgresTestCase
from tests.models import Note
from tests.shelf.models import Shelf


def run(case: type[unittest.TestCase]) -> unittest.TestResult:
    """Run every test of `case` here, as the runner would, and return the result."""
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    return result


def row_counts() -> tuple[int, int]:
    """Return how many notes and shelves are committed, read on a connection of its own."""
    engine = sa.create_engine(parallelq.get_engine().url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            notes = conn.execute(sa.select(sa.func.count()).select_from(Note)).scalar_one()
            shelves = conn.execute(sa.text(f"SELECT count(*) FROM {Shelf._meta.db_table}"))
            return notes, shelves.scalar_one()
    finally:
        engine.dispose()


class TestCaseTests(PostgresTestCase):
    def assertPassed(self, result: unittest.TestResult, tests: int) -> None:
        problems = [f"{test}: {trace}" for test, trace in result.errors + result.failures]
        self.assertEqual(problems, [])
        self.assertEqual(result.testsRun, tests)

    def test_tasks_see_the_tests_rows_and_nothing_outlives_the_test(self):
        self.assertPassed(run(shared_cases.SeesItsOwnRows), tests=9)
        self.assertEqual(row_counts(), (0, 0))

    def test_djangos_own_testcase_hides_the_tests_rows_from_tasks(self):
        self.assertPassed(run(shared_cases.PlainTestCase), tests=1)
        self.assertEqual(row_counts(), (0, 0))

    def test_a_sessions_savepoint_need_not_nest_with_atomic_blocks(self):
        self.assertPassed(run(shared_cases.AcrossAtomicBlocks), tests=3)
        self.assertEqual(row_counts(), (0, 0))

    def test_sharing_ends_with_the_test_case(self):
        self.assertPassed(run(shared_cases.SeesItsOwnRows), tests=9)
        with parallelq.scope():
            threads = parallel(lambda: threading.get_ident(), lambda: threading.get_ident())
            self.assertIsInstance(session.get_bind(), sa.Engine)
        self.assertNotIn(threading.get_ident(), threads)  # on worker threads again


class SharedConnectionTests(PostgresTestCase):
    def test_outside_a_transaction_it_says_what_it_needs(self):
        with self.assertRaises(ParallelQueryError) as caught, shared_connection():
            pass
        self.assertIn("needs a transaction that Django holds open", str(caught.exception))

    def test_a_session_commit_inside_atomic_is_rolled_back_with_it(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            with shared_connection(), parallelq.scope():
                session.add(Note(text="x"))
                session.commit()
                self.assertEqual(
                    parallel(lambda: session.scalar(sa.select(sa.func.count(Note.id)))), [1]
                )
            raise RuntimeError("roll back")
        self.assertEqual(row_counts(), (0, 0))

    def test_another_thread_may_not_use_the_shared_connection(self):
        errors: list[BaseException] = []

        def use() -> None:
            try:
                parallelq.get_engine()
            except ParallelQueryError as exc:
                errors.append(exc)

        with transaction.atomic(), shared_connection():
            thread = threading.Thread(target=use)
            thread.start()
            thread.join()
        self.assertEqual(len(errors), 1)
        self.assertIn("only the test's thread may use", str(errors[0]))
        self.assertFalse(connection.in_atomic_block)


class OldRunnerTests(SimpleTestCase):
    def test_the_old_runner_is_djangos_and_says_to_remove_it(self):
        from parallelq.test import DiscoverRunner as OldRunner

        with self.assertWarnsRegex(DeprecationWarning, "Remove TEST_RUNNER"):
            runner = OldRunner(verbosity=0)
        self.assertIsInstance(runner, DiscoverRunner)
        self.assertEqual(OldRunner.teardown_databases, DiscoverRunner.teardown_databases)
