"""Leaks: many requests leave no thread, connection, backend, Session or transaction behind."""

from __future__ import annotations

import gc
import threading
import time

from django.test import Client

from parallelq import get_engine
from parallelq.conf import ENGINE_DEFAULTS
from parallelq.scoping import Scope
from tests.base import PostgresTestCase

POOL_CAPACITY = ENGINE_DEFAULTS["pool_size"] + ENGINE_DEFAULTS["max_overflow"]
# As many worker threads as the pool holds connections, or MAX_WORKERS (8) if more.
WORKER_THREADS = max(8, POOL_CAPACITY)
EXPECTED = {"own": 1, "tasks": [1, 1, 1]}


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("parallelq")]


class RequestLeakTests(PostgresTestCase):
    def get_cheap(self, client: Client, times: int) -> list[Scope]:
        """GET /cheap/ `times` times; check each response; return the requests' scopes."""
        scopes = []
        for _ in range(times):
            response = client.get("/cheap/")
            if response.status_code != 200 or response.json() != EXPECTED:
                raise AssertionError(f"/cheap/ answered {response.status_code}: {response.content}")
            scopes.append(response.wsgi_request.parallelq)
        return scopes

    def warm_up(self) -> int:
        """Run 20 requests; return how many threads other than workers are running then."""
        self.get_cheap(self.client, 20)
        return threading.active_count() - len(workers())

    def assert_nothing_leaked(self, scopes: list[Scope], others: int) -> None:
        self.assertTrue(all(s.closed and s.open_sessions == 0 for s in scopes))
        # Worker threads start lazily, up to WORKER_THREADS, never one per request.
        self.assertEqual(threading.active_count() - len(workers()), others)
        self.assertLessEqual(len(workers()), WORKER_THREADS)
        self.assertEqual(get_engine().pool.checkedout(), 0)
        backends = self.other_backends()
        self.assertLessEqual(len(backends), POOL_CAPACITY, backends)
        self.assertEqual([b for b in backends if b[1] == "idle in transaction"], [])

    def test_sequential_requests_leak_nothing(self):
        others = self.warm_up()
        scopes = self.get_cheap(self.client, 1000)
        self.assertEqual(len(scopes), 1000)
        self.assert_nothing_leaked(scopes, others)

    def test_concurrent_requests_leak_nothing(self):
        others = self.warm_up()
        scopes: list[Scope] = []
        errors: list[BaseException] = []

        def client_thread(requests: int) -> None:
            try:
                scopes.extend(self.get_cheap(Client(), requests))
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        started = time.monotonic()
        shares = [500 // 8 + (i < 500 % 8) for i in range(8)]  # 500 requests in all
        clients = [threading.Thread(target=client_thread, args=(n,), daemon=True) for n in shares]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(max(0.0, started + 45 - time.monotonic()))
        self.assertEqual([t for t in clients if t.is_alive()], [])
        self.assertEqual(errors, [])
        self.assertEqual(len(scopes), 500)
        self.assert_nothing_leaked(scopes, others)


class ReferenceCycleTests(PostgresTestCase):
    def test_a_scopes_tasks_and_sessions_are_freed_without_the_cyclic_gc(self):
        # Objects in reference cycles wait for a collection, and one that reaches
        # the oldest generation pauses every thread for tens of milliseconds.
        # (A task's exception holds the frames it passed through, which hold
        # the task: that rarer path is left to the GC.)
        from parallelq import parallel, scope, session
        from tests.models import Writer

        def lookup() -> object:
            return session.get(Writer, 1)

        with scope():
            session.add(Writer(id=1, name="Ursula"))
            session.commit()
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        self.addCleanup(gc.garbage.clear)
        self.addCleanup(gc.set_debug, 0)
        with scope():
            found = parallel(lookup, lookup, lookup)
            named = parallel(one=lookup, two=lookup)
        self.assertEqual([w.name for w in found], ["Ursula"] * 3)
        self.assertEqual(named["two"].name, "Ursula")
        del found, named
        gc.collect()
        kinds = {type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage}
        left = sorted(k for k in kinds if k.startswith(("parallelq.", "sqlalchemy.orm")))
        self.assertEqual(left, [])
