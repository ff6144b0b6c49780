"""aparallel(): parallel()'s results and errors, awaited while the event loop runs on."""

from __future__ import annotations

import asyncio
import re
import threading
import time

from django.test import override_settings

import parallelq
from parallelq import (
    NoScopeError,
    ParallelQueryError,
    Timeout,
    aparallel,
    get_engine,
    parallel,
    session,
    submit,
)
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.ticker import Ticker

LONG_SLEEP = "pg_sleep(30"
CALLED = r"\bparallel\(\)(?= argument| positional| takes|'s own)"  # where messages name it


def fail_soon():
    time.sleep(0.3)  # the siblings' statements have begun by then
    raise ValueError("panel failed")


class AparallelTests(PostgresTestCase):
    def test_five_sleeps_run_at_once_while_the_loop_keeps_ticking(self):
        async def fan_out():
            async with Ticker() as ticker:
                started = time.monotonic()
                results = await aparallel(*[lambda i=i: (i, sleep(0.3)) for i in range(5)])
                elapsed = time.monotonic() - started
            return results, elapsed, ticker

        with parallelq.scope() as scope:
            results, elapsed, ticker = asyncio.run(fan_out())
        self.assertEqual(results, [(i, 0.3) for i in range(5)])
        self.assertLess(elapsed, 0.6)  # one after another: 1.5 s
        self.assertLess(ticker.largest_gap, 0.1)  # a loop that ran them blocks for 0.3 s
        self.assertGreater(ticker.ticks, 10)
        self.assertEqual(scope.stats.max_concurrency, 5)
        self.assertEqual(scope.stats.in_caller, 0)

    def test_named_callables_return_a_dict_and_tasks_have_their_own_sessions(self):
        def identify():
            sleep(0.1)
            return id(session()), backend_pid(), threading.get_ident()

        async def fan_out():
            return threading.get_ident(), await aparallel(a=identify, b=identify, c=lambda: 3)

        with parallelq.scope():
            loop_thread, results = asyncio.run(fan_out())
        self.assertEqual(list(results), ["a", "b", "c"])
        self.assertEqual(results["c"], 3)
        sessions, pids, threads = zip(results["a"], results["b"], strict=True)
        self.assertEqual(len(set(sessions)), 2)
        self.assertEqual(len(set(pids)), 2)
        self.assertNotIn(loop_thread, threads)

    def test_no_callables_return_an_empty_list_or_dict(self):
        with parallelq.scope():
            self.assertEqual(asyncio.run(aparallel()), [])

    def test_arguments_are_checked_as_parallel_checks_them(self):
        calls = {
            "both kinds": ((lambda: 1,), {"two": lambda: 2}),
            "not callable": ((lambda: 1, 5), {}),
            "named not callable": ((), {"x": "text"}),
            "bad timeout": ((lambda: 1,), {"timeout": 0}),
            "task named like an option": ((), {"totals": len, "return_exceptions": len}),
            "coroutine function": ((Ticker.__aenter__,), {}),
        }
        with parallelq.scope():
            for name, (args, kwargs) in calls.items():
                with self.subTest(name):
                    with self.assertRaises(TypeError) as sync:
                        parallel(*args, **kwargs)
                    with self.assertRaises(TypeError) as awaited:
                        asyncio.run(aparallel(*args, **kwargs))
                    # The same message, naming the function called.
                    expected = re.sub(CALLED, "aparallel()", str(sync.exception))
                    self.assertEqual(str(awaited.exception), expected)

    def test_outside_a_scope_it_raises_no_scope_error(self):
        with self.assertRaisesMessage(NoScopeError, "aparallel() needs an active parallelq scope"):
            asyncio.run(aparallel(lambda: 1))

    def test_the_first_error_is_raised_and_its_siblings_are_stopped(self):
        ran = []

        def queued():
            ran.append("queued")

        with (
            override_settings(PARALLELQ={"MAX_WORKERS": 2}),
            parallelq.scope(),
            self.assertRaisesMessage(ValueError, "panel failed"),
        ):
            started = time.monotonic()
            try:
                asyncio.run(aparallel(lambda: sleep(30), fail_soon, queued))
            finally:
                elapsed = time.monotonic() - started
        self.assertLess(elapsed, 2)
        self.assertEqual(ran, [])  # not started when its sibling failed: never run
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
        self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))

    def test_return_exceptions_puts_errors_in_their_place(self):
        def boom():
            raise ValueError("boom")

        with parallelq.scope():
            results = asyncio.run(aparallel(lambda: sleep(0.05), boom, return_exceptions=True))
        self.assertEqual(results[0], 0.05)
        self.assertIsInstance(results[1], ValueError)

    def test_timeout_names_the_unfinished_tasks_and_stops_their_statements(self):
        def slow():
            return sleep(30)

        with parallelq.scope():
            started = time.monotonic()
            with self.assertRaisesMessage(
                Timeout,
                "aparallel() timed out after 0.3 s; unfinished, their statements cancelled: slow.",
            ):
                asyncio.run(aparallel(fast=lambda: sleep(0.01), slow=slow, timeout=0.3))
            self.assertLess(time.monotonic() - started, 2)
            self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
            self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))

    def test_cancelling_the_awaiting_coroutine_stops_every_task_with_the_scope_still_open(self):
        # No request_finished, no scope teardown: aparallel()'s own cancelling
        # gives every connection back.
        ran = []

        def queued():
            ran.append("queued")

        async def cancelled():
            call = aparallel(*[lambda: sleep(30)] * 2, queued, queued)
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(call, 0.5)

        with override_settings(PARALLELQ={"MAX_WORKERS": 2}), parallelq.scope() as scope:
            asyncio.run(cancelled())
            cancelled_at = time.monotonic()
            self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
            self.assertTrue(self.wait_for(lambda: get_engine().pool.checkedout() == 0, 3))
            self.assertLess(time.monotonic() - cancelled_at, 3)
            self.assertFalse(scope.closed)
            self.assertEqual(scope.open_sessions, 0)
        self.assertEqual(ran, [])

    def test_tasks_that_find_no_free_worker_wait_for_one_off_the_loop(self):
        # Another scope's submit()s hold all four worker threads for 0.4 s.
        def hold_workers():
            with parallelq.scope():
                for future in [submit(sleep, 0.4) for _ in range(2)]:
                    future.result()

        async def fan_out():
            async with Ticker() as ticker:
                started = time.monotonic()
                threads = await aparallel(*[threading.get_ident] * 3)
                return threading.get_ident(), threads, time.monotonic() - started, ticker

        options = {"pool_size": 4}
        with override_settings(PARALLELQ={"MAX_WORKERS": 2, "ENGINE_OPTIONS": options}):
            holders = [threading.Thread(target=hold_workers) for _ in range(2)]
            for holder in holders:
                holder.start()
            time.sleep(0.1)  # their sleeps have begun
            with parallelq.scope() as scope:
                loop_thread, threads, elapsed, ticker = asyncio.run(fan_out())
            for holder in holders:
                holder.join()
        self.assertNotIn(loop_thread, threads)
        self.assertGreater(elapsed, 0.15)  # they waited for the sleeps to end
        self.assertLess(ticker.largest_gap, 0.1)
        self.assertEqual(scope.stats.in_caller, 0)

    @override_settings(PARALLELQ={"ENABLED": False})
    def test_disabled_runs_the_tasks_one_by_one_off_the_loop(self):
        async def fan_out():
            async with Ticker() as ticker:
                started = time.monotonic()
                results = await aparallel(*[lambda: (sleep(0.1), threading.get_ident())] * 3)
                return threading.get_ident(), results, time.monotonic() - started, ticker

        with parallelq.scope() as scope:
            loop_thread, results, elapsed, ticker = asyncio.run(fan_out())
        self.assertNotIn(loop_thread, [thread for _, thread in results])
        self.assertGreater(elapsed, 0.3)
        self.assertEqual(scope.stats.max_concurrency, 1)
        self.assertLess(ticker.largest_gap, 0.1)

    def test_inside_a_task_it_is_refused(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(ParallelQueryError, "Call parallel() there"),
        ):
            parallel(lambda: asyncio.run(aparallel(lambda: 1)))
