"""The public API: what parallelq exports, its exception hierarchy, and use outside a scope."""

from __future__ import annotations

import sqlalchemy as sa
from django.test import SimpleTestCase

import parallelq
from parallelq import NoScopeError, ParallelQueryError, Timeout, parallel, session, submit

PUBLIC_NAMES = [
    "NoScopeError",
    "ParallelQueryError",
    "Timeout",
    "get_engine",
    "parallel",
    "scope",
    "session",
    "submit",
]


class ExportTests(SimpleTestCase):
    def test_all_lists_exactly_the_public_names(self):
        self.assertEqual(parallelq.__all__, PUBLIC_NAMES)

    def test_every_public_name_resolves(self):
        for name in PUBLIC_NAMES:
            with self.subTest(name=name):
                self.assertIsNotNone(getattr(parallelq, name))

    def test_star_import_gives_the_public_names(self):
        namespace: dict[str, object] = {}
        exec("from parallelq import *", namespace)
        self.assertEqual(sorted(k for k in namespace if k != "__builtins__"), PUBLIC_NAMES)

    def test_callables_are_callable(self):
        for name in ["get_engine", "parallel", "scope", "submit"]:
            with self.subTest(name=name):
                self.assertTrue(callable(getattr(parallelq, name)))


class ExceptionHierarchyTests(SimpleTestCase):
    def test_parallel_query_error_is_an_exception(self):
        self.assertTrue(issubclass(ParallelQueryError, Exception))

    def test_timeout_is_a_parallel_query_error_and_a_timeout_error(self):
        self.assertTrue(issubclass(Timeout, ParallelQueryError))
        self.assertTrue(issubclass(Timeout, TimeoutError))

    def test_timeout_is_caught_by_except_timeout_error(self):
        with self.assertRaises(TimeoutError):
            raise Timeout("late")

    def test_no_scope_error_is_a_parallel_query_error(self):
        self.assertTrue(issubclass(NoScopeError, ParallelQueryError))
        self.assertFalse(issubclass(NoScopeError, TimeoutError))


class OutsideAnyScopeTests(SimpleTestCase):
    """No request and no `with parallelq.scope():` is active in these tests."""

    def assertNoScopeErrorExplains(self, caught: NoScopeError, what: str) -> None:
        message = str(caught)
        self.assertIn(what, message)
        self.assertIn("parallelq.middleware.ParallelQueryMiddleware", message)
        self.assertIn("with parallelq.scope():", message)

    def test_parallel_raises_no_scope_error(self):
        with self.assertRaises(NoScopeError) as caught:
            parallel(lambda: 1)
        self.assertNoScopeErrorExplains(caught.exception, "parallel()")

    def test_submit_raises_no_scope_error(self):
        with self.assertRaises(NoScopeError) as caught:
            submit(print)
        self.assertNoScopeErrorExplains(caught.exception, "submit()")

    def test_session_execute_raises_no_scope_error(self):
        with self.assertRaises(NoScopeError) as caught:
            session.execute(sa.text("SELECT 1"))
        self.assertNoScopeErrorExplains(caught.exception, "parallelq.session")

    def test_calling_session_raises_no_scope_error(self):
        with self.assertRaises(NoScopeError) as caught:
            session()
        self.assertNoScopeErrorExplains(caught.exception, "parallelq.session")

    def test_no_scope_error_is_caught_as_parallel_query_error(self):
        with self.assertRaises(ParallelQueryError):
            parallel(lambda: 1)

    def test_submit_without_scope_does_not_run_the_function(self):
        ran = []
        with self.assertRaises(NoScopeError):
            submit(ran.append, "ran")
        self.assertEqual(ran, [])
