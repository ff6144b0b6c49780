"""parallel() is refused in a thread that runs an event loop; submit() goes to a worker there."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from unittest import mock

from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.test import AsyncClient, override_settings

import parallelq
from parallelq import get_engine, parallel, submit
from tests.base import PostgresTestCase, sleep
from tests.ticker import Ticker


class EventLoopThreadTests(PostgresTestCase):
    def test_parallel_on_the_loops_thread_raises_and_names_aparallel(self):
        ran = []

        async def call():
            parallel(lambda: ran.append(1))

        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                SynchronousOnlyOperation,
                "parallel() was called in the thread of a running event loop, which it would "
                "block until its tasks end. In async code, await parallelq.aparallel() with the "
                "same arguments, or run the synchronous code that calls it with sync_to_async().",
            ),
        ):
            asyncio.run(call())
        self.assertEqual(ran, [])

    def test_parallel_in_another_thread_while_a_loop_runs_works(self):
        async def call():
            async with Ticker() as ticker:
                results = await sync_to_async(parallel, thread_sensitive=False)(
                    *[lambda: sleep(0.2)] * 3
                )
            return results, ticker

        with parallelq.scope():
            results, ticker = asyncio.run(call())
        self.assertEqual(results, [0.2] * 3)
        self.assertLess(ticker.largest_gap, 0.1)

    def test_django_allow_async_unsafe_lets_it_block_the_loop(self):
        async def call():
            return parallel(lambda: 1)

        with mock.patch.dict(os.environ, {"DJANGO_ALLOW_ASYNC_UNSAFE": "true"}), parallelq.scope():
            self.assertEqual(asyncio.run(call()), [1])

    def test_submit_on_the_loops_thread_hands_the_task_to_a_worker(self):
        async def call():
            return threading.get_ident(), await asyncio.wrap_future(submit(threading.get_ident))

        with parallelq.scope():
            loop_thread, task_thread = asyncio.run(call())
        self.assertNotEqual(task_thread, loop_thread)

    @override_settings(PARALLELQ={"ENABLED": False})
    def test_submit_on_the_loops_thread_with_enabled_false_runs_one_task_at_a_time(self):
        async def call():
            futures = [submit(lambda: (sleep(0.1), threading.get_ident())[1]) for _ in range(3)]
            loop_thread = threading.get_ident()
            return loop_thread, await asyncio.gather(*map(asyncio.wrap_future, futures))

        with parallelq.scope() as scope:
            loop_thread, threads = asyncio.run(call())
        self.assertNotIn(loop_thread, threads)
        self.assertEqual(scope.stats.max_concurrency, 1)

    def test_cancelling_an_awaited_submit_stops_its_statement(self):
        async def call():
            future = submit(sleep, 30)
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(future), 0.5)
            return future

        with parallelq.scope():
            started = time.monotonic()
            future = asyncio.run(call())
            self.assertTrue(self.wait_for(future.done, 3))
        self.assertLess(time.monotonic() - started, 3)
        self.assertFalse(self.running("pg_sleep(30"))


class AsyncViewTests(PostgresTestCase):
    def test_an_async_view_calling_parallel_gets_synchronous_only_operation(self):
        # asyncio.run(), not an async test method: asgiref would leave a thread behind
        # for the cyclic GC to end, while test_faults counts threads.
        with self.assertRaisesMessage(SynchronousOnlyOperation, "aparallel()"):
            asyncio.run(AsyncClient().get("/async-parallel/"))
        self.assertEqual(get_engine().pool.checkedout(), 0)
