"""The public API: what parallelq exports, its exception hierarchy, and use outside a scope."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import types
from pathlib import Path

import sqlalchemy as sa
from django.test import SimpleTestCase

import parallelq
from parallelq import NoScopeError, ParallelQueryError, Timeout, parallel, session, submit

PUBLIC_NAMES = [
    "NoScopeError",
    "ParallelQueryError",
    "Scope",
    "Timeout",
    "aparallel",
    "get_engine",
    "on_replica",
    "parallel",
    "request_scope",
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

    def test_version_is_the_installed_distributions(self):
        # pyproject.toml reads the version from parallelq.__version__ when it builds.
        self.assertEqual(parallelq.__version__, importlib.metadata.version("parallelq"))

    def test_callables_are_callable(self):
        for name in ["get_engine", "on_replica", "parallel", "request_scope", "scope", "submit"]:
            with self.subTest(name=name):
                self.assertTrue(callable(getattr(parallelq, name)))


class ModuleTests(SimpleTestCase):
    def test_import_gives_the_module_for_every_submodule(self):
        # No public name shadows a module: parallelq.scope is the function, and
        # the module that holds it is parallelq.scoping.
        for name in modules():
            with self.subTest(module=name):
                module = importlib.import_module(name)
                exec(f"import {name} as imported", namespace := {})
                self.assertIs(namespace["imported"], module)
                self.assertIsInstance(module, types.ModuleType)

    def test_no_run_time_import_cycle(self):
        graph = {name: run_time_imports(path) for name, path in modules().items()}
        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            self.assertNotIn(name, path, f"import cycle: {' -> '.join((*path, name))}")
            if name not in done:
                for imported in graph.get(name, ()):
                    visit(imported, (*path, name))
                done.add(name)

        for name in graph:
            visit(name, ())


def modules() -> dict[str, Path]:
    """Return every module of the package by its dotted name."""
    package = Path(parallelq.__file__).parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        name = ".".join(("parallelq", *path.relative_to(package).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def run_time_imports(path: Path) -> set[str]:
    """Return the parallelq modules `path` imports when it is imported, not under TYPE_CHECKING."""
    imported = set()
    for node in ast.parse(path.read_text()).body:  # top level only: not inside functions
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("parallelq"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            imported |= {n for n in names if n in modules()} or {node.module or ""}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("parallelq")}
    return imported - {"parallelq"}


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
