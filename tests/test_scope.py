"""scope(): parallelq outside a request, its own Session, teardown, nesting and stats."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import NoScopeError, get_engine, parallel, session, submit
from parallelq.scoping import Scope
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.models import Note


def slow_pid() -> int:
    """Hold the task's connection a moment, so that tasks overlap; return its backend pid."""
    sleep(0.1)
    return backend_pid()


class ScopeBlockTests(PostgresTestCase):
    def wait_for_running_sleep(self) -> None:
        deadline = time.monotonic() + 10
        while not any(
            state == "active" and "pg_sleep" in query for _, state, query in self.other_backends()
        ):
            self.assertLess(time.monotonic(), deadline, "the task's statement never started")
            time.sleep(0.02)

    def test_scope_works_in_plain_code_without_a_request(self):
        with parallelq.scope() as s:
            self.assertIsInstance(s, Scope)
            self.assertEqual(parallel(lambda: 1, lambda: 2), [1, 2])
            self.assertEqual(session.execute(sa.text("SELECT 41 + 1")).scalar_one(), 42)

    def test_exit_closes_the_scope_and_returns_every_connection(self):
        with parallelq.scope() as s:
            backend_pid()
            parallel(backend_pid, backend_pid)
            self.assertFalse(s.closed)
            self.assertGreaterEqual(get_engine().pool.checkedout(), 1)
        self.assertTrue(s.closed)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_exit_closes_the_scope_when_the_block_raises(self):
        with self.assertRaises(ZeroDivisionError), parallelq.scope() as s:
            backend_pid()
            raise ZeroDivisionError
        self.assertTrue(s.closed)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_exit_rolls_back_what_the_scope_session_did_not_commit(self):
        with self.assertLogs("parallelq", "WARNING") as logs, parallelq.scope():
            session.add(Note(text="never committed"))
            session.flush()
        self.assertIn("uncommitted changes", logs.output[0])
        with parallelq.scope():
            self.assertEqual(session.scalars(sa.select(Note)).all(), [])

    def test_nothing_works_after_exit(self):
        with parallelq.scope() as s:
            pass
        with self.assertRaises(NoScopeError):
            parallel(lambda: 1)
        with self.assertRaises(NoScopeError):
            session.execute(sa.text("SELECT 1"))
        with self.assertRaisesMessage(NoScopeError, "after its parallelq scope was torn down"):
            s.session  # noqa: B018 - the property opens the Session

    def test_exit_cancels_a_task_still_running(self):
        with parallelq.scope():
            future = submit(sleep, 30)
            self.wait_for_running_sleep()
            started = time.perf_counter()
        elapsed = time.perf_counter() - started
        self.assertIsInstance(future.exception(timeout=10), sa.exc.OperationalError)
        self.assertLess(elapsed, 3)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_inner_scope_block_restores_the_outer_one(self):
        with parallelq.scope() as outer:
            outer_session = session()
            with parallelq.scope() as inner:
                self.assertIs(session(), inner.session)
                self.assertIsNot(inner.session, outer_session)
            self.assertTrue(inner.closed)
            self.assertFalse(outer.closed)
            self.assertIs(session(), outer_session)
            self.assertEqual(parallel(lambda: 1), [1])


class ScopeSessionTests(PostgresTestCase):
    def test_callers_session_is_the_scopes_own_session(self):
        with parallelq.scope() as s:
            self.assertIs(session(), s.session)
            self.assertIs(session(), session())

    def test_task_sessions_differ_from_the_scopes_and_from_each_other(self):
        # Session.hash_key is unique per Session, unlike id() of a collected one.
        def own_session():
            sleep(0.1)
            return session().hash_key

        with parallelq.scope() as s:
            task_sessions = parallel(own_session, own_session, own_session)
            caller_session = session()
            self.assertIs(caller_session, s.session)
        self.assertEqual(len(set(task_sessions)), 3)
        self.assertNotIn(caller_session.hash_key, task_sessions)

    def test_scope_session_and_tasks_use_different_connections(self):
        with parallelq.scope():
            caller_pid = backend_pid()
            task_pids = parallel(slow_pid, slow_pid, slow_pid)
        self.assertNotIn(caller_pid, task_pids)
        self.assertEqual(len(set(task_pids)), 3)


class NestedParallelTests(PostgresTestCase):
    def test_parallel_inside_a_task_returns_its_results(self):
        with parallelq.scope():
            results = parallel(
                lambda: parallel(lambda: 1, lambda: 2),
                lambda: parallel(a=lambda: "a", b=lambda: sleep(0.05)),
                timeout=20,
            )
        self.assertEqual(results, [[1, 2], {"a": "a", "b": 0.05}])

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_nested_parallel_does_not_deadlock_with_one_worker(self):
        def inner(i):
            sleep(0.01)
            return i

        def outer(n):
            return sum(parallel(*[lambda i=i: inner(i) for i in range(n)]))

        with parallelq.scope():
            started = time.perf_counter()
            results = parallel(lambda: outer(3), lambda: outer(4), timeout=20)
            elapsed = time.perf_counter() - started
        self.assertEqual(results, [0 + 1 + 2, 0 + 1 + 2 + 3])
        self.assertLess(elapsed, 10)

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_submit_inside_a_task_does_not_deadlock_with_one_worker(self):
        def outer():
            return submit(lambda: "inner").result(timeout=10)

        with parallelq.scope():
            self.assertEqual(submit(outer).result(timeout=20), "inner")

    def test_nested_tasks_have_sessions_of_their_own(self):
        def key():
            return session().hash_key

        def outer():
            session.execute(sa.text("SELECT 1"))
            return key(), parallel(key, key)

        with parallelq.scope() as s:
            outer_session, inner_sessions = parallel(outer)[0]
            scope_session = s.session.hash_key
        self.assertEqual(len({outer_session, *inner_sessions, scope_session}), 4)

    def test_nested_tasks_run_in_the_outer_tasks_thread(self):
        def outer():
            return threading.get_ident(), parallel(threading.get_ident, threading.get_ident)

        with parallelq.scope():
            outer_thread, inner_threads = parallel(outer)[0]
        self.assertEqual(inner_threads, [outer_thread, outer_thread])
        self.assertNotEqual(outer_thread, threading.get_ident())


class StatsTests(PostgresTestCase):
    def test_a_fresh_scope_has_empty_stats(self):
        with parallelq.scope() as s:
            self.assertEqual(s.stats.tasks, 0)
            self.assertEqual(s.stats.max_concurrency, 0)
            self.assertEqual(s.stats.db_seconds, 0)

    def test_stats_count_the_tasks_of_parallel_and_submit(self):
        with parallelq.scope() as s:
            parallel(*[lambda: sleep(0.2)] * 3)
            self.assertEqual(s.stats.tasks, 3)
            submit(sleep, 0.2).result(timeout=10)
            self.assertEqual(s.stats.tasks, 4)
        self.assertEqual(s.stats.tasks, 4)

    def test_stats_show_the_tasks_overlapped(self):
        with parallelq.scope() as s:
            parallel(*[lambda: sleep(0.3)] * 3)
        self.assertEqual(s.stats.max_concurrency, 3)
        self.assertGreaterEqual(s.stats.db_seconds, 0.9)
        self.assertGreaterEqual(s.stats.wall_seconds, 0.3)
        self.assertLess(s.stats.wall_seconds, s.stats.db_seconds / 2)

    @override_settings(PARALLELQ={"MAX_WORKERS": 2})
    def test_max_concurrency_never_exceeds_max_workers(self):
        with parallelq.scope() as s:
            parallel(*[lambda: sleep(0.1)] * 5)
        self.assertEqual(s.stats.tasks, 5)
        self.assertEqual(s.stats.max_concurrency, 2)


class RegistryTests(PostgresTestCase):
    def test_a_finished_task_leaves_no_session_in_the_registry(self):
        with parallelq.scope() as opened:
            parallel(*[backend_pid] * 20)
            self.assertEqual(opened.open_sessions, 0)
            backend_pid()  # the scope's own Session
            self.assertEqual(opened.open_sessions, 1)
            future = submit(sleep, 0.5)
            deadline = time.monotonic() + 5
            while opened.open_sessions < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(opened.open_sessions, 2)
            self.assertFalse(future.done())
            future.result(timeout=10)
            self.assertEqual(opened.open_sessions, 1)
        self.assertEqual(opened.open_sessions, 0)
