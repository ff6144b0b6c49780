"""Read replicas (replicas.py) against a real streaming replica of the test run's PostgreSQL.

These tests drive replicas.py itself, with submit() inside a scope: they bind
the task's Session to replicas.route(...) (and import a Snapshot) before its
first statement. tests/test_replicas_api.py tests parallel(using="replica").
"""

from __future__ import annotations

import logging
import os
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import SimpleTestCase, override_settings

import parallelq
from parallelq import get_engine, session, submit
from parallelq.checks import check_settings
from parallelq.replicas import dispose_replicas, get_replicas, on_replica, route, using_of
from parallelq.snapshot import Snapshot
from tests import pg
from tests.base import PostgresTestCase
from tests.models import Note
from tests.replica import start_replica
from tests.test_snapshot import COUNT, Writer

IN_RECOVERY = sa.text("SELECT pg_is_in_recovery()")


def in_recovery() -> bool:
    return bool(session.scalar(IN_RECOVERY))


def insert() -> None:
    session.add(Note(text="written"))
    session.commit()


def routed(fn, using="replica", snapshot=None):
    """Return `fn` as a task whose Session is routed as routing.Route routes it."""

    def task():
        s = session()  # not begun yet: no connection
        s.bind = snapshot.engine if snapshot is not None else route(using, s.bind)
        if snapshot is not None:
            snapshot.attach(s)
        return fn()

    return task


def run(fn, using="replica"):
    """Run `fn` as one routed task and return its result; no task may take 10 s."""
    return submit(routed(fn, using)).result(timeout=10)


class ReplicaTestCase(PostgresTestCase):
    """Tests with a streaming replica of their own, and PARALLELQ['REPLICAS'] naming it."""

    replicas = 1  # how many times REPLICAS names the replica

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.replica = start_replica()
        except pg.Unavailable as exc:
            if os.environ.get("CI") == "true":
                raise
            raise unittest.SkipTest(f"No streaming replica: {exc}") from exc
        cls.addClassCleanup(cls.replica.remove)

    def setUp(self):
        url = self.replica.url(connection.settings_dict["NAME"])
        names = [f"{url}?application_name=pq_replica_{i}" for i in range(self.replicas)]
        overridden = override_settings(PARALLELQ={"MAX_WORKERS": 8, "REPLICAS": names})
        overridden.enable()
        self.addCleanup(overridden.disable)
        self.addCleanup(dispose_replicas)
        super().setUp()  # the tables, on the primary Engine of these settings
        self.replica.wait_for_replay()

    def primary_count(self) -> int:
        with get_engine().connect() as conn:
            return int(conn.scalar(COUNT))


class RoutingTests(ReplicaTestCase):
    def test_replica_tasks_run_on_the_replica_and_others_on_the_primary(self):
        with parallelq.scope():
            self.assertTrue(run(in_recovery))
            self.assertFalse(run(in_recovery, using="primary"))
            self.assertFalse(submit(in_recovery).result(timeout=10))  # the default
            self.assertFalse(in_recovery())  # the scope's own Session stays on the primary

    def test_a_write_in_a_replica_task_fails_in_the_caller_and_reaches_no_server(self):
        with parallelq.scope():
            future = submit(routed(insert))
            with self.assertRaises(sa.exc.InternalError) as raised:
                future.result(timeout=10)
        self.assertEqual(raised.exception.orig.pgcode, "25006")
        self.assertIn("read-only transaction", str(raised.exception))
        self.assertEqual(self.primary_count(), 0)

    def test_on_replica_routes_a_submitted_callable_and_passes_its_arguments(self):
        def recovery_and(*args, **kwargs):
            return in_recovery(), args, kwargs

        marked = on_replica(recovery_and)
        self.assertEqual(using_of(marked), "replica")
        self.assertEqual(using_of(recovery_and), "primary")
        self.assertEqual(marked.__name__, "recovery_and")
        with parallelq.scope():
            # As submit() does: the mark says where, the arguments go to fn.
            future = submit(routed(lambda: marked(1, using="x"), using_of(marked)))
            self.assertEqual(future.result(timeout=10), (True, (1,), {"using": "x"}))

    def test_text_statements_on_the_replica_end_without_a_warning(self):
        # A task's end asks whether its text() statements wrote: on a standby too.
        with self.assertNoLogs("parallelq", logging.WARNING), parallelq.scope():
            self.assertEqual(run(lambda: session.scalar(sa.text("SELECT 1"))), 1)

    def test_a_consistent_call_exports_and_imports_on_one_replica(self):
        def recovery_and_count():
            return in_recovery(), session.scalar(COUNT)

        agreed = []
        with Writer(), parallelq.scope():
            for _ in range(50):
                with Snapshot.export(route("replica", get_engine())) as snapshot:
                    futures = [
                        submit(routed(recovery_and_count, snapshot=snapshot)) for _ in range(5)
                    ]
                    results = [f.result(timeout=10) for f in futures]
                self.assertEqual({recovery for recovery, _ in results}, {True})
                agreed.append(len({n for _, n in results}) == 1)
        self.assertEqual(agreed, [True] * 50)


class RoundRobinTests(ReplicaTestCase):
    replicas = 2

    def test_replica_tasks_take_the_replicas_in_turn(self):
        name = sa.text("SELECT current_setting('application_name')")
        with parallelq.scope():
            names = [run(lambda: session.scalar(name)) for _ in range(4)]
        self.assertEqual(names, ["pq_replica_0", "pq_replica_1"] * 2)

    def test_a_replica_that_refuses_connections_is_skipped_and_logged_once(self):
        dead = f"postgresql://postgres@127.0.0.1:{pg._free_port()}/x"
        url = self.replica.url(connection.settings_dict["NAME"])
        with (
            override_settings(PARALLELQ={"REPLICAS": [dead, url]}),
            self.assertLogs("parallelq", logging.WARNING) as logs,
            parallelq.scope(),
        ):
            started = time.monotonic()
            self.assertEqual([run(in_recovery) for _ in range(6)], [True] * 6)
            self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(len(logs.records), 1, logs.output)
        self.assertRegex(
            logs.output[0],
            r"Replica postgresql\+psycopg2://postgres@127\.0\.0\.1:\d+/x did not answer "
            r"\(connection to server .* failed: Connection refused Is the server running .*\); "
            r"its tasks go to the other replicas or the primary, and it is tried again every 5 s\.",
        )


class FailoverTests(ReplicaTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(self.replica.start_if_stopped)  # for the next test

    def test_a_stopped_replica_is_replaced_by_the_primary_then_used_again(self):
        with self.assertLogs("parallelq", logging.WARNING) as logs, parallelq.scope():
            self.assertTrue(run(in_recovery))
            self.replica.stop()
            stopped = time.monotonic()
            # No error and no hang: every task is served, the first ones already by the primary.
            served = [run(in_recovery) for _ in range(20)]
            fell_back = time.monotonic() - stopped
            self.assertEqual(served, [False] * 20)
            self.assertLess(fell_back, 5)
            # A write there fails as on the replica, and nothing reaches the primary.
            with self.assertRaises(sa.exc.InternalError) as raised:
                run(insert)
            self.assertEqual(raised.exception.orig.pgcode, "25006")
            self.assertEqual(self.primary_count(), 0)

            self.replica.start()
            started = time.monotonic()
            while not run(in_recovery):
                self.assertLess(time.monotonic() - started, 10, "the replica was not used again")
                time.sleep(0.05)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(len(logs.output), 2, logs.output)
        self.assertIn("did not answer", logs.output[0])
        self.assertIn("answers again; tasks are routed to it.", logs.output[1])

    def test_a_replica_stopped_mid_run_fails_only_the_statements_it_was_running(self):
        outcomes = []  # (started, ended, on_replica or the exception)
        stop = threading.Event()

        def loop():
            with parallelq.scope():
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        result = run(
                            lambda: session.scalar(
                                sa.text("SELECT pg_is_in_recovery() FROM pg_sleep(0.02)")
                            )
                        )
                    except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                        result = exc
                    outcomes.append((started, time.monotonic(), result))

        with self.assertLogs("parallelq", logging.WARNING) as logs, ThreadPoolExecutor(4) as loops:
            running = [loops.submit(loop) for _ in range(4)]
            time.sleep(0.5)
            stopping = time.monotonic()
            self.replica.stop()
            stopped = time.monotonic()
            time.sleep(1)
            stop.set()
            for future in running:
                future.result(timeout=30)

        self.assertLess(max(ended - began for began, ended, _ in outcomes), 5, "a task hung")
        before = [r for began, _, r in outcomes if began < stopping]
        after = [r for began, _, r in outcomes if began > stopped]
        self.assertIn(True, before)
        self.assertTrue(after)
        self.assertEqual(set(after), {False}, "a task after the stop failed or used the replica")
        # A statement running when the replica went down fails, as on a primary that stops.
        errors = [r for _, _, r in outcomes if isinstance(r, BaseException)]
        self.assertEqual({type(e) for e in errors} - {sa.exc.OperationalError}, set())
        for line in logs.output:
            # A task whose statement ended just before the shutdown fails to roll back.
            self.assertRegex(line, "did not answer|Ending the Session of task .* failed")


@override_settings(PARALLELQ={"REPLICAS": []})
class NoReplicaTests(PostgresTestCase):
    def test_replica_tasks_run_read_only_on_the_primary(self):
        with parallelq.scope():
            self.assertFalse(run(in_recovery))
            read_only = sa.text("SELECT current_setting('transaction_read_only')")
            self.assertEqual(run(lambda: session.scalar(read_only)), "on")
            self.assertEqual(run(lambda: session.scalar(read_only), using="primary"), "off")
            with self.assertRaises(sa.exc.InternalError) as raised:
                run(insert)
            self.assertEqual(raised.exception.orig.pgcode, "25006")
            # The pool's connection is read-write again for the next task.
            submit(insert).result(timeout=10)
            self.assertEqual(session.scalar(COUNT), 1)

    def test_no_replica_engine_is_built(self):
        self.assertEqual(len(get_replicas()), 0)


class ReplicaSettingsTests(SimpleTestCase):
    @override_settings(PARALLELQ={"REPLICAS": "postgresql://replica/db"})
    def test_a_string_is_e008(self):
        (error,) = check_settings()
        self.assertEqual(error.id, "parallelq.E008")
        self.assertEqual(
            error.msg,
            "PARALLELQ['REPLICAS'] must be a list of database URLs, not 'postgresql://replica/db'.",
        )
        with self.assertRaisesRegex(ImproperlyConfigured, "must be a list of database URLs"):
            get_replicas()

    @override_settings(PARALLELQ={"REPLICAS": ["postgresql://replica/db", "nosuch://x/y"]})
    def test_a_url_with_an_unknown_driver_is_e008_named_by_its_place(self):
        (error,) = check_settings()
        self.assertEqual(error.id, "parallelq.E008")
        self.assertEqual(
            error.msg,
            "PARALLELQ['REPLICAS'][1] names the driver 'nosuch', which SQLAlchemy cannot load.",
        )
        with self.assertRaisesMessage(ImproperlyConfigured, error.msg):
            get_replicas()

    @override_settings(PARALLELQ={"REPLICAS": ["postgresql://u:secret@replica:5433/db"]})
    def test_replica_engines_use_psycopg2_a_short_connect_timeout_and_the_primary_pool(self):
        self.addCleanup(dispose_replicas)
        (engine,) = get_replicas().engines  # built without connecting
        self.assertEqual(engine.url.drivername, "postgresql+psycopg2")
        self.assertEqual(engine.url.password, "secret")
        self.assertEqual(engine.pool.size(), 15)
        args = engine.dialect.create_connect_args(engine.url)[1]
        self.assertEqual(args["host"], "replica")
        self.assertIsNot(engine, get_engine())

    def test_connect_timeout_of_the_url_or_connect_args_is_kept(self):
        for settings, expected in (
            ({"REPLICAS": ["postgresql://replica/db"]}, 2),
            ({"REPLICAS": ["postgresql://replica/db?connect_timeout=9"]}, "9"),
            (
                {
                    "REPLICAS": ["postgresql://replica/db"],
                    "ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 7}},
                },
                7,
            ),
        ):
            with self.subTest(settings=settings), override_settings(PARALLELQ=settings):
                self.addCleanup(dispose_replicas)
                (engine,) = get_replicas().engines
                sa.event.listen(engine, "do_connect", _refuse)
                with self.assertRaises(_Refused) as refused:
                    engine.connect()
                self.assertEqual(refused.exception.kwargs["connect_timeout"], expected)


class _Refused(Exception):
    def __init__(self, kwargs):
        super().__init__("not connecting")
        self.kwargs = kwargs


def _refuse(dialect, record, args, kwargs):
    # A do_connect listener: what the driver would be given, without connecting.
    raise _Refused(kwargs)
