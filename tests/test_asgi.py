"""Under ASGI (Django's AsyncClient) sync and async views get a scope, torn down once sent."""

from __future__ import annotations

import time

from django.test import AsyncClient

from parallelq import get_engine
from tests.base import PostgresTestCase
from tests.test_middleware import PANELS
from tests.ticker import Ticker


class AsgiTests(PostgresTestCase):
    async def test_a_request_through_asgi_runs_tasks_and_tears_its_scope_down(self):
        client = AsyncClient()
        response = await client.get("/backends/")
        self.assertEqual(response.status_code, 200)
        pids = response.json()
        self.assertEqual(len(set(pids["tasks"])), 4)
        self.assertNotIn(pids["request"], pids["tasks"])
        scope = response.asgi_request.parallelq
        self.assertTrue(scope.closed)
        self.assertEqual(scope.open_sessions, 0)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    async def test_an_async_view_awaiting_aparallel_answers_while_the_loop_ticks(self):
        async with Ticker() as ticker:
            started = time.monotonic()
            response = await AsyncClient().get("/async-sleeps/")
            elapsed = time.monotonic() - started
        self.assertEqual(response.json(), {"slept": [0.3] * 5})
        self.assertLess(elapsed, 0.6)  # one after another: 1.5 s
        self.assertLess(ticker.largest_gap, 0.1)  # parallel() would hold the loop 0.3 s
        scope = response.asgi_request.parallelq
        self.assertEqual(scope.stats.max_concurrency, 5)
        self.assertTrue(scope.closed)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    async def test_the_demos_async_view_returns_the_five_panels(self):
        response = await AsyncClient().get("/dashboard/panels/")
        self.assertEqual(response.status_code, 200)
        panels = response.json()
        self.assertEqual(list(panels), PANELS)
        self.assertEqual(
            panels["totals"], {"authors": 400, "books": 4_000, "reviews": 40_000, "orders": 30_000}
        )
        self.assertEqual(response.asgi_request.parallelq.stats.tasks, 5)
        self.assertEqual(get_engine().pool.checkedout(), 0)
