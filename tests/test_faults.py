"""Faults: a backend killed mid-task, the server restarting, BaseExceptions raised in tasks."""

from __future__ import annotations

import threading
import time
import unittest

import sqlalchemy as sa
from django.db import connection
from django.test import override_settings

import parallelq
from parallelq import get_engine, parallel, session
from tests import pg
from tests.base import PostgresTestCase, sleep

PRE_PING = {"MAX_WORKERS": 8, "ENGINE_OPTIONS": {"pool_pre_ping": True}}


def wait_for(condition, seconds: float):
    """Return condition()'s first truthy value, polling for at most `seconds`; else None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    return None


def one_and_pid() -> tuple[int, int]:
    """Hold the task's connection 50 ms, so that tasks overlap; return (1, its backend pid)."""
    row = session.execute(sa.text("SELECT 1, pg_backend_pid() FROM pg_sleep(0.05)")).one()
    return int(row[0]), int(row[1])


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("parallelq")]


class KilledBackendTests(PostgresTestCase):
    def kill_running_sleep(self) -> int:
        """Terminate the backend running pg_sleep as soon as it shows; return its pid."""

        def running_sleep() -> int | None:
            backends = self.other_backends()
            return next((p for p, s, q in backends if s == "active" and "pg_sleep(10)" in q), None)

        pid = wait_for(running_sleep, 10)
        self.assertIsNotNone(pid, "the task's pg_sleep never started")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            self.assertTrue(cursor.fetchone()[0])
        return pid

    def kill_mid_task(self) -> dict[str, object]:
        """Kill the backend of a task parallel() runs in another thread; report what happened."""
        with parallelq.scope():
            parallel(*[one_and_pid] * 8)  # the pool now holds idle connections
        outcome: dict[str, object] = {}

        def call() -> None:
            with parallelq.scope() as opened:
                try:
                    parallel(lambda: sleep(10))
                except BaseException as exc:  # noqa: BLE001 - checked by the test thread
                    outcome.update(error=exc, at=time.monotonic(), open=opened.open_sessions)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        outcome["killed"] = self.kill_running_sleep()
        killed_at = time.monotonic()
        caller.join(15)
        self.assertFalse(caller.is_alive(), "parallel() never returned after its backend died")
        self.assertIn("error", outcome, "parallel() returned although its backend died")
        outcome["seconds"] = outcome["at"] - killed_at
        return outcome

    def check_killed_backend_fails_fast_and_is_not_reused(self) -> None:
        outcome = self.kill_mid_task()
        self.assertIsInstance(outcome["error"], sa.exc.DBAPIError)
        self.assertLess(outcome["seconds"], 3)
        self.assertEqual(get_engine().pool.checkedout(), 0)
        with parallelq.scope():
            results = parallel(*[one_and_pid] * 10)
        self.assertEqual([one for one, _ in results], [1] * 10)
        self.assertNotIn(outcome["killed"], [pid for _, pid in results])
        response = self.client.get("/backends/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(set(response.json()["tasks"])), 4)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_backend_killed_mid_task_raises_within_3_s_and_the_pool_recovers(self):
        self.check_killed_backend_fails_fast_and_is_not_reused()

    def test_killed_backends_connection_is_discarded_with_sqlalchemys_pre_ping_too(self):
        with override_settings(PARALLELQ=PRE_PING):
            self.check_killed_backend_fails_fast_and_is_not_reused()

    def test_task_whose_backend_died_ends_its_session_without_an_error_logged(self):
        with self.assertNoLogs("parallelq", "ERROR"):
            outcome = self.kill_mid_task()
            self.assertEqual(outcome["open"], 0, "the scope still holds the ended task's Session")


class ServerRestartTests(PostgresTestCase):
    def restart_server(self) -> None:
        try:
            pg.restart()
        except pg.Unavailable as exc:
            raise unittest.SkipTest(str(exc)) from exc
        connection.close()  # Django's own connection died with the server too

    def server_started_at(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            return cursor.fetchone()[0]

    def check_requests_after_a_restart_work(self):
        before, started_at = self.client.get("/backends/").json(), self.server_started_at()
        self.restart_server()
        self.assertGreater(self.server_started_at(), started_at)
        for _ in range(2):
            response = self.client.get("/backends/")
            self.assertEqual(response.status_code, 200)
            pids = response.json()
            self.assertEqual(len(set(pids["tasks"])), 4)
            self.assertNotIn(pids["request"], pids["tasks"])
            self.assertFalse(
                {pids["request"], *pids["tasks"]} & {before["request"], *before["tasks"]}
            )
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_requests_after_a_restart_work(self):
        # parallelq's liveness check sees the closed sockets: no request fails.
        self.check_requests_after_a_restart_work()

    def test_requests_after_a_restart_work_with_sqlalchemys_pre_ping(self):
        with override_settings(PARALLELQ=PRE_PING):
            self.check_requests_after_a_restart_work()


class Abort(BaseException):
    """A BaseException of the application's own, like KeyboardInterrupt."""


class BaseExceptionTests(PostgresTestCase):
    def check_base_exceptions_reach_the_caller_and_spare_the_workers(self) -> None:
        deadline = time.monotonic() + 5
        for retired in workers():  # threads of the executor the settings change shut down
            retired.join(max(0.0, deadline - time.monotonic()))
        with parallelq.scope():
            parallel(*[lambda: sleep(0.05)] * 8)  # warm-up: start the worker threads
            threads, alive = threading.active_count(), workers()
            one = sa.select(sa.literal(1))
            for exc_type in (KeyboardInterrupt, SystemExit, Abort):

                def raise_it(exc_type=exc_type):
                    session.execute(sa.text("SELECT 1"))
                    raise exc_type("raised in a task")

                with self.subTest(exc_type=exc_type.__name__):
                    with self.assertRaises(exc_type) as caught:
                        parallel(raise_it, lambda: sleep(0.05))
                    self.assertIs(type(caught.exception), exc_type)
                    self.assertGreaterEqual(threading.active_count(), threads)
                    self.assertEqual([t for t in alive if not t.is_alive()], [])
                    self.assertEqual(parallel(*[lambda: session.scalar(one)] * 20), [1] * 20)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_base_exceptions_in_tasks_reach_the_caller_and_leave_the_workers_running(self):
        with override_settings(PARALLELQ={"MAX_WORKERS": 8}):
            self.check_base_exceptions_reach_the_caller_and_spare_the_workers()

    def test_base_exceptions_with_one_worker_leave_it_running(self):
        with override_settings(PARALLELQ={"MAX_WORKERS": 1}):
            self.check_base_exceptions_reach_the_caller_and_spare_the_workers()
