"""GIL-bound batches run one or two tasks at a time; one that waits on the database is widened."""

from __future__ import annotations

import contextlib
import importlib
import time
import unittest
from collections.abc import Iterator
from unittest import mock

import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import Timeout, affinity, parallel, session, workers
from parallelq.scope import EXPLORE_EVERY, GIL_BOUND_WINDOWS, STALL, record_batch
from tests.base import PostgresTestCase, sleep


def python_work() -> int:
    """About a millisecond of Python under the GIL, then a statement, which lets it go."""
    total = sum(range(20_000))
    return int(session.execute(sa.text("SELECT :n"), {"n": total}).scalar_one())


def fail() -> None:
    raise ValueError("task failed")


@contextlib.contextmanager
def stall_after(seconds: float) -> Iterator[None]:
    """Let a held-back batch wait `seconds` before it widens, so no test sees it widen."""
    # The modules, not the names parallelq exports: parallelq.scope is a function.
    modules = [importlib.import_module(f"parallelq.{name}") for name in ("scope", "tasks")]
    with contextlib.ExitStack() as stack:
        for module in modules:
            stack.enter_context(mock.patch.object(module, "STALL", seconds))
        yield


# Changing PARALLELQ also makes the process forget earlier batches, so each
# test starts with none. The window holds back calls whose threads the OS may
# run on any core: a call held on one (PIN_CPU) runs its tasks all at once.
fresh = override_settings(PARALLELQ={"MAX_WORKERS": 8, "PIN_CPU": False})


class GilBoundWindowTests(PostgresTestCase):
    @unittest.skipUnless(affinity.available(), "this OS cannot hold a thread on one core")
    @override_settings(PARALLELQ={"MAX_WORKERS": 8, "PIN_CPU": True})
    def test_a_call_held_on_one_core_runs_gil_bound_tasks_all_at_once(self):
        self.make_batches_gil_bound()
        time.sleep(workers.QUIET_FOR * 2)  # a call is held only in a quiet process
        with parallelq.scope() as scope:
            results = parallel(*[python_work] * 20)
        self.assertEqual(results, [sum(range(20_000))] * 20)
        self.assertGreater(scope.stats.max_concurrency, max(GIL_BOUND_WINDOWS))

    def make_batches_gil_bound(self) -> None:
        with parallelq.scope():
            for _ in range(5):
                parallel(*[python_work] * 8)

    @fresh
    def test_gil_bound_tasks_run_a_few_at_a_time(self):
        self.make_batches_gil_bound()
        with parallelq.scope() as scope:
            results = parallel(*[python_work] * 20)
        self.assertEqual(results, [sum(range(20_000))] * 20)
        self.assertEqual(scope.stats.tasks, 20)
        self.assertIn(scope.stats.max_concurrency, GIL_BOUND_WINDOWS)

    @fresh
    def test_gil_bound_calls_run_in_the_faster_window_and_now_and_then_the_other(self):
        self.make_batches_gil_bound()
        # Both windows have run and been timed; now make one far faster.
        for faster, slower in [(1, 2), (2, 1)]:
            for _ in range(30):
                record_batch(1.0, 1.0, 1000, faster)  # 1 ms per task
                record_batch(1.0, 1.0, 10, slower)  # 100 ms per task
            windows = []
            for _ in range(EXPLORE_EVERY):
                with stall_after(2.0), parallelq.scope() as held:
                    parallel(*[python_work] * 20)
                windows.append(held.stats.max_concurrency)
            self.assertEqual(sorted(windows), sorted([faster] * (EXPLORE_EVERY - 1) + [slower]))

    @fresh
    def test_tasks_that_wait_on_the_database_are_widened_to_max_workers(self):
        self.make_batches_gil_bound()
        started = time.monotonic()
        with parallelq.scope() as scope:
            self.assertEqual(parallel(*[lambda: sleep(0.3)] * 4), [0.3] * 4)
        elapsed = time.monotonic() - started
        self.assertEqual(scope.stats.max_concurrency, 4)
        # Two at a time would take 0.6 s; widening starts the last two STALL late.
        self.assertLess(elapsed, 0.6)

    @fresh
    def test_a_timeout_ends_a_batch_the_window_holds_back(self):
        self.make_batches_gil_bound()
        short = STALL / 2.5  # 2 ms: two running, one ends every millisecond or so
        batch = 100  # at least 100 ms at two at a time
        started = time.monotonic()
        with parallelq.scope(), self.assertRaises(Timeout):
            parallel(*[lambda: sleep(short)] * batch, timeout=0.02)
        self.assertLess(time.monotonic() - started, batch * short / max(GIL_BOUND_WINDOWS))

    @fresh
    def test_the_caller_wakes_when_its_held_back_batch_is_done(self):
        self.make_batches_gil_bound()
        started = time.monotonic()
        with stall_after(2.0), parallelq.scope() as held:
            self.assertEqual(parallel(*[python_work] * 10), [sum(range(20_000))] * 10)
        self.assertIn(held.stats.max_concurrency, GIL_BOUND_WINDOWS)
        # Ten tasks of a millisecond or two; a caller that slept until it
        # checked for stalls would take 2 s.
        self.assertLess(time.monotonic() - started, 1.0)

    @fresh
    def test_the_caller_wakes_when_a_task_of_its_held_back_batch_fails(self):
        self.make_batches_gil_bound()
        started = time.monotonic()
        with stall_after(2.0), parallelq.scope() as held, self.assertRaises(ValueError):
            parallel(fail, *[lambda: sleep(0.05)] * 10)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertLess(held.stats.tasks, 11)  # the held-back ones never ran
