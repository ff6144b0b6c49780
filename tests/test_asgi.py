"""Under ASGI the middleware's scope is torn down too, once the response is sent."""

from __future__ import annotations

from django.test import AsyncClient

from parallelq import get_engine
from tests.base import PostgresTestCase


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
