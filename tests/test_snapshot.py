"""One snapshot for a call's tasks (snapshot.py): exported once, imported by each task's Session.

These tests drive Snapshot itself, with submit() inside a scope: export it,
have each task's Session import it (consistent_task()), close it when the
tasks are done. tests/test_consistent.py tests parallel(consistent=True).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import sqlalchemy as sa
from django.db import connection
from django.test import TransactionTestCase, override_settings

import parallelq
from parallelq import ParallelQueryError, Timeout, get_engine, session, submit
from parallelq.engine import dispose_engine
from parallelq.snapshot import Snapshot
from tests import pg
from tests.base import PostgresTestCase
from tests.models import Note

COUNT = sa.select(sa.func.count()).select_from(Note)


def count() -> int:
    return int(session.scalar(COUNT))


def consistent_task(snapshot: Snapshot, fn):
    """Return `fn` as a task whose Session imports `snapshot`, as routing.Route makes it do."""

    def task():
        snapshot.attach(session())  # before its first statement: the Session is not begun
        return fn()

    return task


class Writer:
    """A thread that inserts a row and commits, every millisecond, on a connection of its own."""

    def __init__(self) -> None:
        self.commits = 0
        self._stop = threading.Event()
        self._conn = pg.connect(connection.settings_dict, statement_timeout_ms=5000)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()

    def _run(self) -> None:
        with self._conn.cursor() as cursor:
            while not self._stop.is_set():
                cursor.execute("INSERT INTO pq_test_note (text) VALUES ('w')")  # autocommit
                self.commits += 1
                time.sleep(0.001)


def run_counts(runs: int, *, consistent: bool) -> list[list[int]]:
    """Run 5 count tasks `runs` times; return each run's counts."""
    results = []
    with parallelq.scope():
        for _ in range(runs):
            snapshot = Snapshot.export(get_engine()) if consistent else None
            try:
                tasks = [count if snapshot is None else consistent_task(snapshot, count)] * 5
                futures = [submit(task) for task in tasks]
                results.append([f.result(timeout=30) for f in futures])
            finally:
                if snapshot is not None:
                    snapshot.close()
    return results


class ConsistentSnapshotTests(PostgresTestCase):
    def test_tasks_agree_with_a_snapshot_and_disagree_without_one(self):
        with Writer() as writer:
            time.sleep(0.05)
            consistent = run_counts(200, consistent=True)
            plain = run_counts(200, consistent=False)
        self.assertGreater(writer.commits, 200)
        self.assertEqual([run for run in consistent if len(set(run)) > 1], [])
        # Without a snapshot each task reads whatever is committed when it begins.
        self.assertGreater(sum(len(set(run)) > 1 for run in plain), 0)
        # The counts grew: the writer did commit while the runs read.
        self.assertLess(consistent[0][0], consistent[-1][0])

    def test_every_task_reads_the_state_of_the_export(self):
        with parallelq.scope():
            snapshot = Snapshot.export(get_engine())
            try:
                with Writer():
                    time.sleep(0.05)  # rows committed after the export
                    futures = [submit(consistent_task(snapshot, count)) for _ in range(5)]
                    counts = [f.result(timeout=30) for f in futures]
            finally:
                snapshot.close()
        self.assertEqual(counts, [0] * 5)

    def test_a_task_that_commits_leaves_the_snapshot(self):
        def write_then_read():
            before = count()
            other = pg.connect(connection.settings_dict, statement_timeout_ms=5000)
            try:
                other.cursor().execute("INSERT INTO pq_test_note (text) VALUES ('other')")
            finally:
                other.close()
            still = count()  # the snapshot: the other row is not seen
            session.add(Note(text="own"))
            session.commit()
            return before, still, count()  # a new transaction: both rows are seen

        with parallelq.scope(), Snapshot.export(get_engine()) as snapshot:
            result = submit(consistent_task(snapshot, write_then_read)).result(timeout=30)
        self.assertEqual(result, (0, 0, 2))

    def test_an_imported_snapshot_outlives_the_coordinator(self):
        with parallelq.scope():
            snapshot = Snapshot.export(get_engine())
            imported, closed = threading.Event(), threading.Event()

            def two_counts():
                snapshot.attach(session())
                first = count()
                imported.set()
                closed.wait(10)
                return first, count()

            future = submit(two_counts)
            imported.wait(10)
            snapshot.close()
            with Writer():
                time.sleep(0.05)
                closed.set()
                self.assertEqual(future.result(timeout=30), (0, 0))

    def test_an_update_of_a_row_changed_since_the_snapshot_is_a_serialization_failure(self):
        def update():
            session.execute(sa.update(Note).values(text="task"))
            session.commit()

        with parallelq.scope():
            session.add(Note(text="first"))
            session.commit()
            with Snapshot.export(get_engine()) as snapshot:
                session.execute(sa.update(Note).values(text="changed"))
                session.commit()
                future = submit(consistent_task(snapshot, update))
                with self.assertRaises(sa.exc.OperationalError) as raised:
                    future.result(timeout=30)
        self.assertEqual(raised.exception.orig.pgcode, "40001")

    def test_a_task_that_begins_after_close_cannot_import(self):
        # Why the Snapshot must stay open until every task of the call has begun.
        with parallelq.scope():
            snapshot = Snapshot.export(get_engine())
            opened = threading.Event()

            def late():
                snapshot.attach(session())
                opened.set()
                time.sleep(0.2)  # meanwhile the Snapshot is closed
                return count()

            future = submit(late)
            opened.wait(10)
            snapshot.close()
            with self.assertRaisesRegex(sa.exc.DBAPIError, "invalid snapshot identifier"):
                future.result(timeout=30)
            with self.assertRaisesRegex(ParallelQueryError, "is closed"):
                snapshot.attach(session())

    def test_a_failed_import_is_not_silently_replaced_by_a_newer_state(self):
        with parallelq.scope():
            snapshot = Snapshot.export(get_engine())

            def retry():
                snapshot.attach(session())
                snapshot.close()
                errors = []
                for _ in range(2):
                    try:
                        return count()
                    except sa.exc.DBAPIError as exc:
                        errors.append(str(exc.orig).splitlines()[0])
                        session.rollback()
                return errors

            errors = submit(retry).result(timeout=30)
        self.assertEqual(errors, ['invalid snapshot identifier: "' + snapshot.id + '"'] * 2)

    def test_the_snapshot_holds_one_connection_until_closed(self):
        engine = get_engine()
        with parallelq.scope():
            snapshot = Snapshot.export(engine)
            self.assertEqual(engine.pool.checkedout(), 1)
            self.assertEqual(len(self.running("")), 0)  # idle in its transaction
            states = [state for _, state, _ in self.other_backends()]
            self.assertIn("idle in transaction", states)
            snapshot.close()
            snapshot.close()  # twice is once
            self.assertEqual(engine.pool.checkedout(), 0)

    def test_only_a_task_session_on_the_same_pool_can_import(self):
        with (
            parallelq.scope(),
            Snapshot.export(get_engine()) as snapshot,
            self.assertRaisesRegex(ValueError, "only by a task Session"),
        ):
            snapshot.attach(session())  # the scope's own Session


@override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 1, "pool_timeout": 0.5}})
class SnapshotPoolTests(PostgresTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(dispose_engine)  # the next test's settings get their own Engine

    def test_a_full_pool_ends_the_wait_at_the_timeout(self):
        engine = get_engine()
        with engine.connect():  # the only connection
            started = time.monotonic()
            with self.assertRaisesRegex(Timeout, "waiting for a pooled connection"):
                Snapshot.export(engine, timeout=0.2)
            waited = time.monotonic() - started
        self.assertGreater(waited, 0.15)
        self.assertLess(waited, 0.45)  # before pool_timeout's 0.5 s

    def test_a_full_pool_without_a_timeout_waits_pool_timeout(self):
        engine = get_engine()
        with engine.connect(), self.assertRaises(sa.exc.TimeoutError) as raised:
            Snapshot.export(engine)
        self.assertIn("one connection more than the call's tasks", str(raised.exception.__notes__))

    def test_a_free_connection_starts_no_timer_thread(self):
        threads = threading.active_count()
        with Snapshot.export(get_engine(), timeout=5):
            self.assertEqual(threading.active_count(), threads)


class SqliteSnapshotTests(TransactionTestCase):
    databases = {"default"}

    def setUp(self):
        super().setUp()
        tmp = tempfile.mkdtemp(prefix="parallelq-sqlite-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        url = "sqlite:///" + os.path.join(tmp, "x.sqlite3")
        overridden = override_settings(PARALLELQ={"DATABASE_URL": url})
        overridden.enable()
        self.addCleanup(overridden.disable)
        self.addCleanup(dispose_engine)

    def test_sqlite_cannot_export_and_opens_no_connection(self):
        engine = get_engine()
        with self.assertRaises(ParallelQueryError) as raised:
            Snapshot.export(engine)
        self.assertEqual(
            str(raised.exception),
            "consistent=True needs PostgreSQL, which can export one snapshot for every task "
            "to import (pg_export_snapshot()); this database is sqlite, which cannot. Leave "
            "consistent out, or read what must agree in one task, whose transaction sees one "
            "state.",
        )
        self.assertEqual((engine.pool.checkedout(), engine.pool.checkedin()), (0, 0))
