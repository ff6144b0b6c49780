"""consistent=True on parallel() and aparallel(): one snapshot for every task of a call."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import unittest

import sqlalchemy as sa
from django.test import TransactionTestCase, override_settings

import parallelq
from parallelq import ParallelQueryError, Timeout, aparallel, get_engine, parallel, session
from parallelq.engine import dispose_engine
from tests import shared_cases
from tests.base import PostgresTestCase, sleep
from tests.test_snapshot import Writer, count
from tests.ticker import Ticker

# Backends whose transaction exported a snapshot and is still open: a call's coordinator.
EXPORTERS = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
    "AND query LIKE '%pg_export' || '_snapshot()%'"  # split: this query's own text must not match
)


def exporters() -> int:
    """Return how many coordinators are open, asked on a connection of its own."""
    with get_engine().connect() as conn:
        return int(conn.scalar(EXPORTERS))


def disagreeing(runs: list[list[int]]) -> list[list[int]]:
    return [run for run in runs if len(set(run)) > 1]


def fail_soon():
    time.sleep(0.3)  # the siblings have begun by then
    raise ValueError("panel failed")


class ConsistentTests(PostgresTestCase):
    def test_200_consistent_calls_agree_and_200_plain_ones_do_not(self):
        with Writer() as writer, parallelq.scope():
            time.sleep(0.05)
            consistent = [parallel(*[count] * 5, consistent=True) for _ in range(200)]
            plain = [parallel(*[count] * 5) for _ in range(200)]
        self.assertGreater(writer.commits, 200)
        self.assertEqual(disagreeing(consistent), [])
        self.assertGreater(len(disagreeing(plain)), 0)
        self.assertLess(consistent[0][0], consistent[-1][0])  # the writer did commit meanwhile

    def test_200_awaited_consistent_calls_agree_and_200_plain_ones_do_not(self):
        async def runs(consistent):
            return [await aparallel(*[count] * 5, consistent=consistent) for _ in range(200)]

        with Writer(), parallelq.scope():
            time.sleep(0.05)
            consistent = asyncio.run(runs(True))
            plain = asyncio.run(runs(False))
        self.assertEqual(disagreeing(consistent), [])
        self.assertGreater(len(disagreeing(plain)), 0)
        self.assertLess(consistent[0][0], consistent[-1][0])

    def test_a_task_that_begins_late_reads_the_state_of_the_calls_start(self):
        def late():
            time.sleep(0.2)  # the writer commits meanwhile
            return count(), session.scalar(EXPORTERS)

        with Writer(), parallelq.scope():
            time.sleep(0.05)
            first, (later, open_then) = parallel(count, late, consistent=True)
            self.assertEqual(exporters(), 0)  # closed when the call returned
        self.assertEqual(first, later)
        self.assertEqual(open_then, 1)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_a_nested_consistent_call_shares_the_snapshot_and_a_plain_one_does_not(self):
        def outer():
            first = count()
            time.sleep(0.1)  # the writer commits meanwhile
            return first, parallel(count, count, consistent=True), parallel(count)[0]

        with Writer(), parallelq.scope():
            time.sleep(0.05)
            [(first, nested, plain)] = parallel(outer, consistent=True)
            self.assertEqual(exporters(), 0)
        self.assertEqual(nested, [first, first])
        self.assertGreater(plain, first)

    def test_fail_fast_and_timeout_close_the_snapshot_as_they_raise(self):
        with parallelq.scope():
            with self.assertRaisesMessage(ValueError, "panel failed"):
                parallel(lambda: sleep(30), fail_soon, consistent=True)
            self.assertEqual(exporters(), 0)
            with self.assertRaises(Timeout):
                parallel(lambda: sleep(30), consistent=True, timeout=0.3)
            self.assertEqual(exporters(), 0)
        self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))

    def test_a_cancelled_aparallel_closes_the_snapshot_once_its_tasks_have_stopped(self):
        ended = []

        def busy_in_python():
            count()  # imports the snapshot
            time.sleep(1.0)  # no statement to cancel: the task runs on
            ended.append(time.monotonic())

        async def cancelled():
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(aparallel(busy_in_python, consistent=True), 0.3)
            return exporters(), bool(ended)  # just after the cancel

        with parallelq.scope() as scope:
            open_then, ended_then = asyncio.run(cancelled())
            self.assertEqual((open_then, ended_then), (1, False))
            self.assertTrue(self.wait_for(lambda: exporters() == 0, 5))
            self.assertEqual(len(ended), 1)  # not before its task returned
            self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))
            self.assertFalse(scope.closed)

    def test_teardown_closes_the_snapshot_of_an_aparallel_that_never_resumed(self):
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        with parallelq.scope():
            call = loop.create_task(aparallel(lambda: sleep(30), consistent=True))
            loop.run_until_complete(asyncio.sleep(0.3))  # exported, its task running
            self.assertEqual(exporters(), 1)
        # The scope cancelled the task, then closed the snapshot.
        self.assertEqual(exporters(), 0)
        self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))
        call.cancel()
        loop.run_until_complete(asyncio.gather(call, return_exceptions=True))

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 1, "pool_timeout": 30}})
    def test_the_wait_for_the_snapshots_connection_ends_at_the_timeout_and_runs_no_task(self):
        self.addCleanup(dispose_engine)
        ran = []

        async def awaited():
            async with Ticker() as ticker:
                with self.assertRaises(Timeout):
                    await aparallel(lambda: ran.append(1), consistent=True, timeout=0.3)
            return ticker.largest_gap

        with parallelq.scope(), get_engine().connect():  # the pool's only connection
            started = time.monotonic()
            with self.assertRaisesMessage(
                Timeout,
                "consistent=True timed out after 0.3 s waiting for a pooled connection to "
                "export the call's snapshot; no task ran.",
            ):
                parallel(lambda: ran.append(1), consistent=True, timeout=0.3)
            self.assertLess(time.monotonic() - started, 1.5)
            self.assertLess(asyncio.run(awaited()), 0.15)  # the loop ran on while it waited
        self.assertEqual(ran, [])

    def test_consistent_and_using_are_checked_and_cannot_name_a_task(self):
        cases = [
            (
                {"consistent": "yes"},
                "parallel() argument 'consistent' must be True or False, not 'yes'.",
            ),
            (
                {"using": "standby"},
                "parallel() argument 'using' must be 'primary' or 'replica', not 'standby'.",
            ),
            (
                {"totals": count, "using": count},
                "'using' is parallel()'s own: give the task another name.",
            ),
            (
                {"totals": count, "consistent": count},
                "'consistent' is parallel()'s own: give the task another name.",
            ),
            (
                {"totals": parallelq.on_replica(count), "consistent": True},
                "parallel() argument 'totals' is marked on_replica(), but consistent=True reads "
                "one snapshot, which lives on one server: here the primary. Pass "
                "using='replica' to run every task on a replica, or leave on_replica() out.",
            ),
        ]
        with parallelq.scope():
            for kwargs, message in cases:
                with self.subTest(kwargs=kwargs):
                    args = () if "totals" in kwargs else (count,)
                    with self.assertRaisesMessage(TypeError, message):
                        parallel(*args, **kwargs)
                    awaited = message.replace("parallel()", "aparallel()")
                    with self.assertRaisesMessage(TypeError, awaited):
                        asyncio.run(aparallel(*args, **kwargs))
            self.assertEqual(exporters(), 0)


class ConsistentSqliteTests(TransactionTestCase):
    databases = {"default"}

    def test_consistent_on_sqlite_raises_and_runs_no_task(self):
        tmp = tempfile.mkdtemp(prefix="parallelq-sqlite-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        url = "sqlite:///" + os.path.join(tmp, "x.sqlite3")
        ran = []
        with override_settings(PARALLELQ={"DATABASE_URL": url}), parallelq.scope():
            self.addCleanup(dispose_engine)
            for call in (
                lambda: parallel(lambda: ran.append(1), consistent=True),
                lambda: asyncio.run(aparallel(lambda: ran.append(1), consistent=True)),
            ):
                with self.assertRaisesMessage(
                    ParallelQueryError, "consistent=True needs PostgreSQL"
                ):
                    call()
            pool = get_engine().pool
            self.assertEqual((pool.checkedout(), pool.checkedin()), (0, 0))  # never connected
        self.assertEqual(ran, [])


class ConsistentInATestCaseTests(PostgresTestCase):
    def test_tasks_read_the_tests_transaction(self):
        result = unittest.TestResult()
        cases = unittest.defaultTestLoader.loadTestsFromTestCase(shared_cases.ConsistentInATest)
        cases.run(result)
        self.assertEqual([f"{t}: {trace}" for t, trace in result.errors + result.failures], [])
        self.assertEqual(result.testsRun, 2)
