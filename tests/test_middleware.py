"""ParallelQueryMiddleware: each request gets its own scope, torn down once the response is sent."""

from __future__ import annotations

from django.http import HttpRequest
from django.test import SimpleTestCase
from sqlalchemy import orm

from parallelq import NoScopeError, get_engine, request_scope
from parallelq.scoping import Scope
from tests.base import PostgresTestCase
from tests.models import Note

PANELS = ["totals", "top_authors", "best_rated", "sales_by_genre", "busiest_days"]


def add_notes(*texts: str) -> None:
    with orm.Session(get_engine()) as db:
        db.add_all(Note(text=text) for text in texts)
        db.commit()


class RequestScopeTests(PostgresTestCase):
    def idle_in_transaction(self) -> list[tuple[int, str, str]]:
        return [b for b in self.other_backends() if b[1] == "idle in transaction"]

    def test_each_task_has_its_own_backend_besides_the_requests(self):
        response = self.client.get("/backends/")
        self.assertEqual(response.status_code, 200)
        pids = response.json()
        self.assertEqual(len(pids["tasks"]), 4)
        self.assertEqual(len(set(pids["tasks"])), 4)
        self.assertNotIn(pids["request"], pids["tasks"])

    def test_request_leaves_no_connection_checked_out_or_transaction_open(self):
        add_notes("a", "b")
        for url in ["/backends/", "/notes/", "/load/", "/stats/", "/write/?text=c&commit=1"]:
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)
                self.assertEqual(get_engine().pool.checkedout(), 0)
                self.assertEqual(self.idle_in_transaction(), [])

    def test_second_request_starts_with_an_empty_session_outside_a_transaction(self):
        add_notes("a", "b", "c")
        first = self.client.get("/load/").json()
        self.assertEqual(first, {"loaded": 3, "identity_map": 3})
        second = self.client.get("/notes/").json()
        self.assertEqual(second["identity_map"], 0)
        self.assertFalse(second["in_transaction"])
        self.assertEqual(second["texts"], ["a", "b", "c"])
        # /notes/ itself began a transaction; the next request does not inherit it either.
        third = self.client.get("/notes/").json()
        self.assertEqual((third["identity_map"], third["in_transaction"]), (0, False))

    def test_request_parallelq_is_the_requests_scope_with_its_stats(self):
        response = self.client.get("/stats/")
        stats = response.json()
        self.assertTrue(stats["is_scope"])
        self.assertTrue(stats["is_current"])
        self.assertEqual(stats["tasks"], 4)
        self.assertEqual(stats["max_concurrency"], 4)
        self.assertGreaterEqual(stats["db_seconds"], 0.4)
        self.assertGreaterEqual(stats["wall_seconds"], 0.1)
        self.assertLess(stats["wall_seconds"], stats["db_seconds"] / 2)
        scope = response.wsgi_request.parallelq
        self.assertIsInstance(scope, Scope)
        self.assertTrue(scope.closed)
        self.assertEqual(scope.stats.tasks, 4)

    def test_each_request_has_a_scope_of_its_own(self):
        first = self.client.get("/notes/").wsgi_request.parallelq
        second = self.client.get("/notes/").wsgi_request.parallelq
        self.assertIsNot(first, second)
        self.assertTrue(first.closed)
        self.assertTrue(second.closed)
        self.assertEqual(second.stats.tasks, 0)


class StreamingTests(PostgresTestCase):
    def test_streaming_response_reads_futures_and_session_while_streaming(self):
        add_notes("a", "b")
        response = self.client.get("/stream/")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.streaming)
        scope = response.wsgi_request.parallelq
        self.assertIs(scope.closed, False)
        body = b"".join(response.streaming_content)
        self.assertEqual(body, b"task 0\ntask 1\ntask 2\nnotes 2\n")
        self.assertIs(scope.closed, True)
        self.assertEqual(scope.stats.tasks, 3)
        self.assertEqual(get_engine().pool.checkedout(), 0)
        self.assertEqual([b for b in self.other_backends() if b[1] == "idle in transaction"], [])


class DashboardTests(PostgresTestCase):
    def test_dashboard_renders_five_panels_in_under_half_the_serial_time(self):
        response = self.client.get("/dashboard/?latency_ms=100")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(list(response.context["run"].panels), PANELS)
        self.assertContains(response, '<section class="panel">', count=5)
        self.assertContains(response, 'id="serial-ms"')
        self.assertContains(response, 'id="parallel-ms"')
        serial_ms, parallel_ms = response.context["serial_ms"], response.context["parallel_ms"]
        self.assertGreaterEqual(serial_ms, 500)  # five panels, each waiting 100 ms
        self.assertGreaterEqual(parallel_ms, 100)
        self.assertLess(parallel_ms, serial_ms / 2)
        self.assertContains(response, f"{serial_ms} ms")
        self.assertContains(response, f"{parallel_ms} ms")
        self.assertEqual(response.context["stats"].max_concurrency, 5)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_dashboard_rejects_a_latency_that_is_not_a_number(self):
        response = self.client.get("/dashboard/?latency_ms=abc")
        self.assertEqual(response.status_code, 400)
        self.assertIn(b"latency_ms", response.content)

    def test_dashboard_panels_show_the_seeded_counts(self):
        response = self.client.get("/dashboard/")
        self.assertEqual(response.status_code, 200)
        totals = response.context["run"].panels["totals"]
        self.assertEqual(
            totals, {"authors": 400, "books": 4_000, "reviews": 40_000, "orders": 30_000}
        )


class RequestScopeFunctionTests(PostgresTestCase):
    def test_request_scope_returns_the_requests_scope(self):
        request = self.client.get("/stats/").wsgi_request
        self.assertIs(request_scope(request), request.parallelq)
        self.assertEqual(request_scope(request).stats.tasks, 4)


class NoMiddlewareTests(SimpleTestCase):
    def test_request_scope_of_a_request_the_middleware_did_not_see_is_an_error(self):
        with self.assertRaises(NoScopeError) as caught:
            request_scope(HttpRequest())
        self.assertEqual(
            str(caught.exception),
            "request_scope() found no parallelq scope on this request. Add "
            "'parallelq.middleware.ParallelQueryMiddleware' to MIDDLEWARE.",
        )
