"""bench.capacity's model (docs/scaling.md): pure arithmetic, no database.

The model's prediction against a measured run is in bench/capacity (``measure``),
not here: these tests check the model's own claims.
"""

from __future__ import annotations

import dataclasses
import math

from django.test import SimpleTestCase

from bench.capacity import latency, model


def _costs(queries_ms=(20.0,) * 5, **changes) -> model.Costs:
    n = len(queries_ms)
    return dataclasses.replace(model.Costs(tuple(queries_ms), (0.3,) * n, (0.0,) * n), **changes)


class MakespanTests(SimpleTestCase):
    def test_tasks_run_in_waves_of_the_width(self):
        self.assertEqual(latency.makespan([20.0] * 5, 5), 20.0)
        self.assertEqual(latency.makespan([20.0] * 5, 2), 60.0)
        self.assertEqual(latency.makespan([20.0] * 20, 8), 60.0)

    def test_a_slot_that_frees_first_takes_the_next_task(self):
        self.assertEqual(latency.makespan([50.0, 10.0, 10.0, 10.0], 2), 50.0)


class LatencyTests(SimpleTestCase):
    def test_a_lone_request_is_its_own_part_the_longest_query_and_the_task_overheads(self):
        costs = _costs((20.0, 30.0, 10.0), task_ms=0.5, request_ms=1.0)
        plan = model.Deployment(processes=1, clients=1, app_cores=1000, db_cores=1000)
        self.assertAlmostEqual(model.predict(costs, plan).unloaded_ms, 1.0 + 30.5 + 2 * 0.5)

    def test_max_workers_below_the_fan_out_makes_waves(self):
        plan = model.Deployment(processes=1, clients=1, max_workers=2)
        costs = _costs(task_ms=0.5)
        wide = model.predict(costs, dataclasses.replace(plan, max_workers=5)).unloaded_ms
        narrow = model.predict(costs, plan).unloaded_ms
        # Two more waves of a 20 ms query and its task; three tasks fewer started at once.
        self.assertAlmostEqual(narrow - wide, 2 * (20 + 0.5) - 3 * 0.5)

    def test_a_pool_smaller_than_the_requests_want_slows_them(self):
        plan = model.Deployment(processes=1, clients=2, pool_size=15)
        roomy = model.predict(_costs(), plan)
        tight = model.predict(_costs(), dataclasses.replace(plan, pool_size=8))
        self.assertNotEqual(roomy.bound, "pool")
        self.assertEqual(tight.bound, "pool")
        self.assertGreater(tight.latency_ms, 1.3 * roomy.latency_ms)
        self.assertIn("pool: 2 requests want 12 > pool_size 8", tight.flags)

    def test_request_sessions_that_fill_pgbouncer_stall_it(self):
        plan = model.Deployment(processes=4, clients=2, pgbouncer_pool=40, max_connections=200)
        rows = model.table(_costs(), plan, (1, 5))
        self.assertTrue(math.isfinite(rows[0].latency_ms))
        self.assertEqual(rows[1].latency_ms, math.inf)  # 40 requests hold all 40
        self.assertIn(
            "PgBouncer pool: the requests' own Sessions hold all 40; tasks wait for "
            "query_wait_timeout",
            rows[1].flags,
        )
        no_session = model.predict(
            _costs(), dataclasses.replace(plan, servers=5, request_session=False)
        )
        self.assertTrue(math.isfinite(no_session.latency_ms))

    def test_no_more_transactions_are_busy_on_average_than_pgbouncers_pool(self):
        plan = model.Deployment(processes=4, pgbouncer_pool=150, request_session=False)
        for row in model.table(_costs(), plan):
            self.assertLessEqual(row.busy_mean, 150 * 1.001)
            self.assertEqual(row.server_connections, min(row.db_client_connections, 150))

    def test_latency_never_falls_as_servers_are_added(self):
        rows = model.table(_costs(), model.Deployment(db_cores=2))
        latencies = [p.latency_ms for p in rows]
        self.assertEqual(latencies, sorted(latencies))
        self.assertEqual(rows[-1].bound, "db CPU")

    def test_a_saturated_database_caps_the_requests_per_second(self):
        costs = _costs()
        rows = model.table(costs, model.Deployment(db_cores=2), (50, 100))
        cap = 2 * 1000 / costs.db_cpu_ms
        for row in rows:
            self.assertLessEqual(row.requests_per_second, cap)
            self.assertGreater(row.requests_per_second, 0.9 * cap)


class DemandTests(SimpleTestCase):
    def test_connections_grow_linearly_with_servers(self):
        plan = model.Deployment(processes=4, threads=8, clients=2, django_connections=1)
        rows = model.table(_costs(), plan, (1, 2, 10))
        per_server = 4 * (2 * 6 + 8)  # processes × (2 requests × 6 connections + Django's 8)
        self.assertEqual(
            [p.app_connections for p in rows], [per_server, 2 * per_server, 10 * per_server]
        )
        self.assertEqual([p.server_connections for p in rows], [p.app_connections for p in rows])

    def test_worker_threads_that_run_django_queries_keep_a_connection_each(self):
        plan = model.Deployment(processes=1, threads=8, clients=2, django_connections=1)
        without = model.predict(_costs(), plan).app_connections
        with_tasks = model.predict(_costs(), dataclasses.replace(plan, django_in_tasks=True))
        self.assertEqual(with_tasks.app_connections - without, 2 * 5)  # tasks at once

    def test_a_pool_never_opens_more_than_pool_size(self):
        plan = model.Deployment(processes=2, clients=8, pool_size=15)
        self.assertEqual(model.predict(_costs(), plan).app_connections, 2 * 15)

    def test_max_connections_is_flagged_only_when_exceeded(self):
        plan = model.Deployment(processes=4, clients=2, max_connections=100)
        rows = model.table(_costs(), plan, (2, 3))  # 96, then 144 backends
        self.assertEqual(rows[0].flags, ())
        self.assertIn("max_connections: 144 > 97", rows[1].flags)

    def test_pgbouncer_caps_the_backends_at_its_pool(self):
        plan = model.Deployment(processes=4, clients=2, pgbouncer_pool=60, max_connections=100)
        row = model.predict(_costs(), dataclasses.replace(plan, servers=3))
        self.assertEqual(row.db_client_connections, 144)
        self.assertEqual(row.server_connections, 60)
        self.assertFalse([f for f in row.flags if f.startswith("max_connections")])

    def test_replicas_split_parallelqs_connections_and_the_primary_keeps_djangos(self):
        plan = model.Deployment(
            servers=10, processes=4, threads=8, clients=2, django_connections=1, replicas=2
        )
        row = model.predict(_costs(), plan)
        self.assertEqual(row.db_client_connections, 10 * 4 * 12 // 2)
        self.assertEqual(row.server_connections, 10 * 4 * 12 // 2)
        self.assertIn("max_connections on the primary (Django's): 320 > 97", row.flags)
