"""using="replica" and on_replica() through parallel(), aparallel() and submit(), on a replica."""

from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa

import parallelq
from parallelq import aparallel, on_replica, parallel, session, submit
from tests.test_replicas import IN_RECOVERY, ReplicaTestCase, in_recovery, insert
from tests.test_snapshot import Writer, count

READ_ONLY = sa.text("SELECT current_setting('transaction_read_only')")


def where() -> tuple[bool, str]:
    """Return whether the task's server is a standby, and whether its transaction is read-only."""
    return bool(session.scalar(IN_RECOVERY)), str(session.scalar(READ_ONLY))


class ReplicaApiTests(ReplicaTestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(self.replica.start_if_stopped)  # for the next test

    def test_replica_tasks_run_on_the_replica_and_everything_else_on_the_primary(self):
        async def awaited():
            return await aparallel(in_recovery, in_recovery, using="replica")

        with parallelq.scope():
            self.assertEqual(parallel(in_recovery, in_recovery, using="replica"), [True, True])
            self.assertEqual(parallel(in_recovery, in_recovery), [False, False])  # the default
            self.assertEqual(asyncio.run(awaited()), [True, True])
            self.assertEqual(parallel(on_replica(in_recovery), in_recovery), [True, False])
            self.assertTrue(submit(on_replica(in_recovery)).result(timeout=10))
            self.assertFalse(submit(in_recovery).result(timeout=10))
            self.assertFalse(in_recovery())  # the scope's own Session stays on the primary

    def test_on_replica_passes_submits_arguments_on(self):
        def recovery_and(*args, **kwargs):
            return in_recovery(), args, kwargs

        with parallelq.scope():
            future = submit(on_replica(recovery_and), 1, using="x")
            self.assertEqual(future.result(timeout=10), (True, (1,), {"using": "x"}))

    def test_a_write_fails_in_the_caller_with_25006_and_nothing_reaches_the_primary(self):
        with parallelq.scope():
            for call in (
                lambda: parallel(insert, using="replica"),
                lambda: submit(on_replica(insert)).result(timeout=10),
            ):
                with self.assertRaises(sa.exc.InternalError) as raised:
                    call()
                self.assertEqual(raised.exception.orig.pgcode, "25006")
        self.assertEqual(self.primary_count(), 0)

    def test_consistent_on_the_replica_runs_every_task_there_and_they_agree(self):
        def standby_and_count():
            return session.scalar(IN_RECOVERY), count()

        with Writer(), parallelq.scope():
            time.sleep(0.05)
            runs = [
                parallel(*[standby_and_count] * 5, consistent=True, using="replica")
                for _ in range(50)
            ]
        self.assertEqual([run for run in runs if len(set(run)) > 1], [])
        self.assertEqual({standby for run in runs for standby, _ in run}, {True})
        self.assertLess(runs[0][0][1], runs[-1][0][1])  # replayed writes meanwhile

    def test_a_stopped_replica_is_replaced_by_the_primary_then_used_again(self):
        with self.assertLogs("parallelq", logging.WARNING) as logs, parallelq.scope():
            self.assertEqual(parallel(where, using="replica"), [(True, "on")])
            self.replica.stop()
            stopped = time.monotonic()
            # Served by the primary, read-only, from the first call on: no error, no hang.
            self.assertEqual(parallel(where, where, using="replica"), [(False, "on")] * 2)
            self.assertLess(time.monotonic() - stopped, 5)
            self.assertEqual(
                parallel(where, where, consistent=True, using="replica"), [(False, "on")] * 2
            )
            with self.assertRaises(sa.exc.InternalError) as raised:
                parallel(insert, using="replica")
            self.assertEqual(raised.exception.orig.pgcode, "25006")
            self.assertEqual(self.primary_count(), 0)

            self.replica.start()
            started = time.monotonic()
            while parallel(where, using="replica") != [(True, "on")]:
                self.assertLess(time.monotonic() - started, 10, "the replica was not used again")
                time.sleep(0.05)
        self.assertEqual(len(logs.output), 2, logs.output)
        self.assertIn("did not answer", logs.output[0])
        self.assertIn("answers again; tasks are routed to it.", logs.output[1])
