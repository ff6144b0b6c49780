"""PIN_CPU: the tasks of a parallel() call run on the core its caller runs on, and only then."""

from __future__ import annotations

import os
import threading
import time
import unittest
from unittest import mock

from django.test import SimpleTestCase, override_settings

import parallelq
from parallelq import affinity, parallel, submit, workers

CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()


def cpu_set() -> set[int]:
    return os.sched_getaffinity(0)


def on_a_worker() -> tuple[set[int], bool]:
    return cpu_set(), threading.current_thread() is not threading.main_thread()


@unittest.skipUnless(
    affinity.available(),
    "needs sched_getcpu() and sched_setaffinity(), and at least two CPUs to choose from",
)
class PinnedTests(SimpleTestCase):
    def setUp(self) -> None:
        self.assertEqual(cpu_set(), CPUS)
        self.addCleanup(os.sched_setaffinity, 0, CPUS)
        # Earlier tests' tasks ended moments ago: count the process as quiet at once.
        patcher = mock.patch.object(workers, "QUIET_FOR", 0)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_a_call_soon_after_another_is_not_pinned_and_one_after_a_pause_is(self):
        # Under steady traffic, one core would hold back what the others could run.
        with mock.patch.object(workers, "QUIET_FOR", 5.0), parallelq.scope():
            parallel(*[on_a_worker] * 2)
            soon = parallel(*[on_a_worker] * 4)
        self.assertEqual([cores for cores, _ in soon], [CPUS] * 4)
        with mock.patch.object(workers, "QUIET_FOR", 0.05), parallelq.scope():
            parallel(*[on_a_worker] * 2)
            time.sleep(0.2)
            later = parallel(*[on_a_worker] * 4)
        self.assertEqual({len(cores) for cores, _ in later}, {1})

    def test_tasks_run_on_the_one_core_their_caller_is_kept_on(self):
        caller = threading.get_native_id()

        def task() -> tuple[set[int], set[int], bool]:
            return cpu_set(), os.sched_getaffinity(caller), threading.get_native_id() != caller

        with parallelq.scope():
            results = parallel(*[task] * 4)
        cores = {frozenset(cores) for result in results for cores in result[:2]}
        self.assertEqual(len(cores), 1, results)
        (core,) = cores
        self.assertEqual(len(core), 1)
        self.assertLessEqual(core, CPUS)
        self.assertTrue(all(worker for _, _, worker in results), "a task ran in the caller")
        self.assertEqual(cpu_set(), CPUS, "the caller did not get its CPU set back")

    def test_a_worker_gets_the_whole_cpu_set_back_for_unpinned_work(self):
        with parallelq.scope():
            pinned = parallel(*[on_a_worker] * 4)
            self.assertEqual(len(pinned[0][0]), 1)
            unpinned = [submit(on_a_worker) for _ in range(8)]
            results = [future.result(timeout=10) for future in unpinned]
        self.assertEqual([cores for cores, _ in results], [CPUS] * 8)

    @override_settings(PARALLELQ={"PIN_CPU": False})
    def test_pin_cpu_false_leaves_every_thread_on_the_whole_cpu_set(self):
        with parallelq.scope():
            results = parallel(*[on_a_worker] * 4)
        self.assertEqual([cores for cores, _ in results], [CPUS] * 4)

    def test_a_call_made_while_another_runs_is_not_pinned(self):
        # Under load one core would hold back what the others could run.
        release, running = threading.Event(), threading.Event()

        def hold() -> None:
            running.set()
            release.wait(10)

        def other_request() -> None:
            with parallelq.scope():
                parallel(hold)

        thread = threading.Thread(target=other_request)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(release.set)
        self.assertTrue(running.wait(10))
        with parallelq.scope():
            results = parallel(*[on_a_worker] * 4)
        self.assertEqual([cores for cores, _ in results], [CPUS] * 4)
