"""submit(): a concurrent.futures.Future for one task, started at once in a worker thread."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError

from django.test import override_settings

import parallelq
from parallelq import session, submit
from tests.base import PostgresTestCase, sleep


class SubmitTests(PostgresTestCase):
    def test_returns_a_concurrent_futures_future(self):
        with parallelq.scope():
            future = submit(lambda: 1)
            self.assertIsInstance(future, Future)
            self.assertEqual(future.result(timeout=10), 1)

    def test_two_submits_start_at_once_and_finish_together(self):
        with parallelq.scope():
            started = time.perf_counter()
            first, second = submit(sleep, 0.3), submit(sleep, 0.3)
            results = [first.result(timeout=10), second.result(timeout=10)]
            elapsed = time.perf_counter() - started
        self.assertEqual(results, [0.3, 0.3])
        self.assertLess(elapsed, 0.55)

    def test_submit_returns_before_the_task_finishes(self):
        with parallelq.scope():
            started = time.perf_counter()
            future = submit(sleep, 0.3)
            returned_after = time.perf_counter() - started
            self.assertFalse(future.done())
            self.assertEqual(future.result(timeout=10), 0.3)
        self.assertLess(returned_after, 0.2)

    def test_result_with_a_timeout_waits_that_long_at_most(self):
        with parallelq.scope():
            future = submit(sleep, 0.5)
            with self.assertRaises(FutureTimeoutError):
                future.result(timeout=0.05)
            self.assertEqual(future.result(timeout=10), 0.5)

    def test_done_turns_true_when_the_task_ends(self):
        with parallelq.scope():
            future = submit(sleep, 0.3)
            self.assertFalse(future.done())
            future.result(timeout=10)
            self.assertTrue(future.done())
            self.assertFalse(future.cancelled())

    def test_passes_positional_and_keyword_arguments(self):
        def describe(a, b, *, sep, end="."):
            return f"{a}{sep}{b}{end}"

        with parallelq.scope():
            future = submit(describe, "x", "y", sep="-", end="!")
            self.assertEqual(future.result(timeout=10), "x-y!")

    def test_task_runs_on_another_thread_with_its_own_session(self):
        def identify():
            return threading.get_ident(), session()

        with parallelq.scope() as s:
            thread, task_session = submit(identify).result(timeout=10)
            self.assertIsNot(task_session, s.session)
        self.assertNotEqual(thread, threading.get_ident())

    def test_exception_is_set_on_the_future(self):
        def fail():
            raise KeyError("missing")

        with parallelq.scope():
            future = submit(fail)
            self.assertIsInstance(future.exception(timeout=10), KeyError)
            with self.assertRaises(KeyError):
                future.result(timeout=10)

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_cancelling_a_queued_future_succeeds_and_the_function_never_runs(self):
        ran = []
        with parallelq.scope():
            busy = submit(sleep, 0.3)
            queued = submit(ran.append, "queued")
            self.assertFalse(queued.done())
            self.assertTrue(queued.cancel())
            self.assertTrue(queued.cancelled())
            self.assertEqual(busy.result(timeout=10), 0.3)
            # The worker that ran `busy` would have started `queued` next.
            after = submit(lambda: "after").result(timeout=10)
        self.assertEqual(after, "after")
        self.assertEqual(ran, [])

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_queued_future_runs_once_a_worker_is_free(self):
        with parallelq.scope():
            started = time.perf_counter()
            busy = submit(sleep, 0.3)
            queued = submit(time.perf_counter)
            self.assertFalse(queued.done())
            queued_ran_at = queued.result(timeout=10) - started
            self.assertEqual(busy.result(timeout=10), 0.3)
        self.assertGreaterEqual(queued_ran_at, 0.3)

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_a_task_is_settled_before_the_next_queued_one_starts(self):
        with parallelq.scope():
            busy = submit(sleep, 0.2)
            queued = submit(lambda: busy.done())
            self.assertTrue(queued.result(timeout=10))

    def test_cancelling_a_finished_future_fails(self):
        with parallelq.scope():
            future = submit(lambda: 1)
            future.result(timeout=10)
            self.assertFalse(future.cancel())

    def test_non_callable_is_a_type_error_naming_its_type(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                TypeError, "submit() argument 'fn' must be a callable taking no arguments, not int."
            ),
        ):
            submit(42)

    def test_futures_finish_before_the_scope_ends(self):
        with parallelq.scope():
            futures = [submit(sleep, 0.1) for _ in range(3)]
            results = [f.result(timeout=10) for f in futures]
        self.assertEqual(results, [0.1, 0.1, 0.1])
        self.assertEqual(parallelq.get_engine().pool.checkedout(), 0)
