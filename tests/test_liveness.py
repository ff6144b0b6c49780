"""Pooled connections the server closed are replaced before a task gets them, with no error."""

from __future__ import annotations

from django.db import connection

import parallelq
from parallelq import get_engine, parallel
from tests.base import PostgresTestCase, backend_pid, sleep


def pid_after_a_pause():
    sleep(0.1)  # every task holds its connection at once: five distinct ones
    return backend_pid()


class LivenessTests(PostgresTestCase):
    def test_connections_killed_while_idle_in_the_pool_are_replaced_silently(self):
        with parallelq.scope():
            before = set(parallel(*[pid_after_a_pause] * 5))
        self.assertEqual(len(before), 5)
        with connection.cursor() as cursor:
            for pid in before:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        gone = self.wait_for(lambda: not {b[0] for b in self.other_backends()} & before, 5)
        self.assertTrue(gone)
        with parallelq.scope():
            after = set(parallel(*[pid_after_a_pause] * 5))
        self.assertEqual(len(after), 5)
        self.assertFalse(after & before)
        self.assertEqual(get_engine().pool.checkedout(), 0)
