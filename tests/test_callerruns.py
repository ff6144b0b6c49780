"""Caller-runs: with no idle worker thread or connection, parallel() runs tasks in its caller."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import Timeout, get_engine, parallel, submit
from tests.base import PostgresTestCase, sleep

TWO_WORKERS = {
    "MAX_WORKERS": 2,
    "ENGINE_OPTIONS": {"pool_size": 2, "max_overflow": 0, "pool_timeout": 5},
}


@override_settings(PARALLELQ=TWO_WORKERS)
class CallerRunsTests(PostgresTestCase):
    def occupy_workers(self, count: int) -> list[threading.Event]:
        """Keep `count` worker threads busy, from a scope in another thread, until cleanup.

        Returns:
            An Event per busy worker: setting one lets one of them go.
        """
        started = threading.Semaphore(0)
        releases = [threading.Event() for _ in range(count)]

        def block(release: threading.Event) -> None:
            started.release()
            release.wait(20)

        def other_request() -> None:
            with parallelq.scope():
                futures = [submit(block, release) for release in releases]
                for future in futures:
                    future.result(timeout=20)

        thread = threading.Thread(target=other_request, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 20)
        for release in releases:
            self.addCleanup(release.set)
        for _ in range(count):
            self.assertTrue(started.acquire(timeout=10), "the blocking tasks did not start")
        return releases

    def occupy_every_worker(self) -> None:
        self.occupy_workers(2)

    def test_tasks_run_in_worker_threads_while_workers_are_free(self):
        both_running = threading.Barrier(2, timeout=10)

        def meet() -> int:
            both_running.wait()
            return threading.get_ident()

        with parallelq.scope() as scope:
            pair = parallel(meet, meet)
        self.assertNotIn(threading.get_ident(), pair)
        self.assertEqual(len(set(pair)), 2)
        self.assertEqual(scope.stats.in_caller, 0)

    def test_with_one_worker_free_the_caller_runs_the_task_that_found_none(self):
        self.occupy_workers(1)
        both_running = threading.Barrier(2, timeout=10)

        def meet() -> int:
            both_running.wait()
            return threading.get_ident()

        with parallelq.scope() as scope:
            pair = parallel(meet, meet)
        self.assertEqual(sorted(t == threading.get_ident() for t in pair), [False, True])
        self.assertEqual(scope.stats.in_caller, 1)

    def test_tasks_run_in_the_caller_when_every_worker_is_busy(self):
        self.occupy_every_worker()
        with parallelq.scope() as scope:
            threads = parallel(threading.get_ident, threading.get_ident, threading.get_ident)
            pids = parallel(lambda: session_pid(), lambda: session_pid())
        self.assertEqual(threads, [threading.get_ident()] * 3)
        self.assertEqual(len(set(pids)), 1, "one task after the other, on the one idle connection")
        self.assertEqual(scope.stats.tasks, 5)
        self.assertEqual(scope.stats.in_caller, 5)
        self.assertEqual(scope.stats.max_concurrency, 1)

    def test_a_worker_of_another_scope_that_frees_up_takes_none_of_this_scopes_tasks(self):
        # Each scope's queue is its own: what one request did never moves another's work.
        first_worker = self.occupy_workers(2)[0]

        def first() -> float:
            first_worker.set()  # the other scope's task ends while the caller runs this one
            return sleep(0.3)

        with parallelq.scope() as scope:
            results = parallel(first, lambda: sleep(0.1))
        self.assertEqual(results, [0.3, 0.1])
        # The second task started only once the caller had run the first.
        self.assertEqual(scope.stats.max_concurrency, 1)

    def test_tasks_run_in_the_caller_when_the_pool_has_no_idle_connection(self):
        engine = get_engine()
        held = [engine.connect(), engine.connect()]  # pool_size 2, max_overflow 0: all of it
        try:
            with parallelq.scope():
                threads = parallel(threading.get_ident, threading.get_ident)
        finally:
            for connection in held:
                connection.close()
        self.assertEqual(threads, [threading.get_ident()] * 2)

    def test_a_saturated_process_costs_no_more_than_serial_code(self):
        self.occupy_every_worker()
        with parallelq.scope():
            started = time.monotonic()
            results = parallel(lambda: sleep(0.2), lambda: sleep(0.2), lambda: sleep(0.2))
            elapsed = time.monotonic() - started
        self.assertEqual(results, [0.2] * 3)
        # Serial code takes 0.6 s; twice that is a wide margin for the machine's noise.
        self.assertLess(elapsed, 1.2)

    def test_timeout_cancels_a_task_the_caller_runs(self):
        self.occupy_every_worker()
        with parallelq.scope():
            started = time.monotonic()
            with self.assertRaises(Timeout):
                parallel(lambda: sleep(10), timeout=0.5)
            self.assertLess(time.monotonic() - started, 3)
        self.assertTrue(
            self.wait_for(lambda: not self.running("pg_sleep"), 2),
            "the statement still runs on the server",
        )

    def test_a_failing_task_in_the_caller_stops_the_ones_after_it(self):
        self.occupy_every_worker()
        ran = []

        def fail() -> None:
            raise ValueError("boom")

        with parallelq.scope(), self.assertRaisesMessage(ValueError, "boom"):
            parallel(fail, lambda: ran.append(1))
        self.assertEqual(ran, [])


def session_pid() -> int:
    return int(parallelq.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
