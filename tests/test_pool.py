"""A pool smaller than MAX_WORKERS: warned about, and requests finish or time out, never hang."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from django.core.checks import WARNING
from django.test import Client, override_settings

import parallelq
from parallelq import get_engine, parallel, session
from parallelq.checks import check_settings
from tests.base import PostgresTestCase

SMALL_POOL = {
    "MAX_WORKERS": 8,
    "ENGINE_OPTIONS": {"pool_size": 2, "max_overflow": 0, "pool_timeout": 3},
}


class ThreadClient(Client):
    """A Client that re-raises only its own requests' exceptions.

    got_request_exception reaches every Client connected at the time, so with
    concurrent requests a plain Client may re-raise another thread's exception.
    """

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def store_exc_info(self, **kwargs: object) -> None:
        if threading.get_ident() == self.thread:  # the signal is sent in the request's thread
            super().store_exc_info(**kwargs)


def concurrent_gets(url: str, clients: int, seconds: float) -> tuple[list[object], list[str]]:
    """GET `url` from `clients` threads at once, each with its own ThreadClient.

    Returns:
        Each thread's outcome, a status code or the type of the exception the
        Client re-raised, and the names of threads still running after `seconds`.
    """
    barrier = threading.Barrier(clients, timeout=10)
    outcomes: list[object] = []

    def get() -> None:
        client = ThreadClient()
        barrier.wait()
        try:
            outcomes.append(client.get(url).status_code)
        except Exception as exc:  # noqa: BLE001 - the test checks which
            outcomes.append(type(exc))

    threads = [
        threading.Thread(target=get, daemon=True, name=f"client-{i}") for i in range(clients)
    ]
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return outcomes, [t.name for t in threads if t.is_alive()]


@override_settings(PARALLELQ=SMALL_POOL)
class SmallPoolTests(PostgresTestCase):
    def test_pool_smaller_than_max_workers_is_warned_about_as_w002(self):
        messages = check_settings()
        self.assertEqual([m.id for m in messages], ["parallelq.W002"])
        self.assertEqual(messages[0].level, WARNING)

    def check_requests_finish_or_time_out(self, url: str) -> list[object]:
        started = time.monotonic()
        outcomes, hung = concurrent_gets(url, clients=10, seconds=20)
        self.assertEqual(hung, [], f"requests still running after 20 s; outcomes so far {outcomes}")
        self.assertLess(time.monotonic() - started, 20)
        self.assertEqual(len(outcomes), 10)
        # The Client re-raises a view's exception; only the pool timing out may cause one.
        failures = [o for o in outcomes if o != 200]
        self.assertTrue(all(f is sa.exc.TimeoutError for f in failures), outcomes)
        self.assertEqual(get_engine().pool.checkedout(), 0)
        return outcomes

    def test_ten_concurrent_requests_finish_or_time_out_within_20_s(self):
        self.check_requests_finish_or_time_out("/sleeps/")
        # Only the pool's two connections may be left open once the old ones have gone.
        settled = self.wait_for(lambda: len(self.other_backends()) <= 2, 5)
        self.assertTrue(settled, self.other_backends())

    def test_requests_holding_a_connection_each_finish_or_time_out_within_20_s(self):
        self.check_requests_finish_or_time_out("/sleeps/?own=1")

    @override_settings(
        PARALLELQ={
            **SMALL_POOL,
            "ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 3},
        }
    )
    def test_task_timed_out_on_the_pool_fails_after_one_pool_timeout_and_logs_no_error(self):
        with self.assertNoLogs("parallelq", "ERROR"), parallelq.scope():
            session.execute(sa.text("SELECT 1"))  # the scope holds the only connection
            started = time.monotonic()
            with self.assertRaises(sa.exc.TimeoutError) as caught:
                parallel(lambda: session.execute(sa.text("SELECT 1")))
            # One pool_timeout is 3 s; ending the task's Session must not wait for another.
            self.assertLess(time.monotonic() - started, 5)
        (note,) = caught.exception.__notes__
        self.assertIn("found no free connection in the pool within pool_timeout", note)
        self.assertIn("pool_size", note)

    @override_settings(PARALLELQ={**SMALL_POOL, "MAX_WORKERS": 1})
    def test_nested_parallel_with_one_worker_and_two_connections_does_not_deadlock(self):
        one = sa.select(sa.literal(1))
        results: list[object] = []

        def outer() -> list[int]:
            session.execute(one)  # the outer task holds one of the two connections
            return parallel(*[lambda: session.scalar(one)] * 3)

        def run() -> None:
            with parallelq.scope():
                results.extend(parallel(outer, outer, outer))

        started = time.monotonic()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(10)
        self.assertFalse(thread.is_alive(), "nested parallel() deadlocked")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(results, [[1, 1, 1]] * 3)
        self.assertEqual(get_engine().pool.checkedout(), 0)
