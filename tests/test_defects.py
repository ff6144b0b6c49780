"""Defects new users hit, one test each: every one was in 54b8d13 and must stay fixed."""

from __future__ import annotations

import contextvars
import functools
import gc
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import SimpleTestCase, override_settings

import parallelq
from parallelq import get_engine, parallel, session, submit
from parallelq.checks import check_settings
from parallelq.conf import get_settings
from tests.base import PostgresTestCase, database_url, sleep

ROOT = Path(__file__).resolve().parent.parent


# Three pg_sleep(30) tasks in a process of its own, configured from argv[1]
# (the test database's settings) and killed by the test while they run.
def url_of_the_test_database(driver: str) -> str:
    return database_url(driver).render_as_string(hide_password=False)


class DatabaseUrlTests(PostgresTestCase):
    def test_a_database_url_with_no_driver_connects_with_psycopg2(self):
        with override_settings(PARALLELQ={"DATABASE_URL": url_of_the_test_database("postgresql")}):
            self.assertEqual(check_settings(), [])
            with parallelq.scope():
                result = parallel(lambda: session.execute(sa.text("SELECT 1")).scalar_one())
            self.assertEqual(result, [1])
            self.assertEqual(get_engine().dialect.driver, "psycopg2")

    def test_a_database_url_naming_an_uninstalled_driver_is_e007(self):
        url = url_of_the_test_database("postgresql+psycopg")  # psycopg 3, not installed
        with override_settings(PARALLELQ={"DATABASE_URL": url}):
            messages = check_settings()
        self.assertEqual([m.id for m in messages], ["parallelq.E007"], messages)
        self.assertIn("the driver 'postgresql+psycopg'", messages[0].msg)


class WheelTests(SimpleTestCase):
    def test_the_wheel_holds_the_bench_command_and_py_typed(self):
        tmp = Path(tempfile.mkdtemp(prefix="parallelq-wheel-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        ignore = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__")
        shutil.copytree(ROOT, tmp / "src", ignore=ignore)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp / "dist")]
            + [str(tmp / "src")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [wheel] = (tmp / "dist").glob("parallelq-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("parallelq/management/commands/parallelq_bench.py", names)
        self.assertIn("parallelq/py.typed", names)


async def lookup():
    return 1


async def rows():
    yield 1


class CoroutineTests(SimpleTestCase):
    def assertNoCoroutineLeftUnawaited(self, caught: list[warnings.WarningMessage]) -> None:
        gc.collect()
        unawaited = [str(w.message) for w in caught if "was never awaited" in str(w.message)]
        self.assertEqual(unawaited, [])

    def test_coroutine_functions_are_refused_before_anything_runs(self):
        ran: list[str] = []
        calls = {
            "parallel(fn)": lambda: parallel(lambda: ran.append("sibling"), lookup),
            "parallel(x=fn)": lambda: parallel(y=lambda: ran.append("sibling"), x=lookup),
            "submit(fn)": lambda: submit(lookup),
            "parallel(partial)": lambda: parallel(functools.partial(lookup)),
            "parallel(async generator function)": lambda: parallel(rows),
        }
        with warnings.catch_warnings(record=True) as caught, parallelq.scope():
            warnings.simplefilter("always")
            for call, refused in calls.items():
                with self.subTest(call), self.assertRaisesMessage(TypeError, "coroutine"):
                    refused()
            self.assertNoCoroutineLeftUnawaited(caught)
        self.assertEqual(ran, [])

    def test_a_callable_that_returns_a_coroutine_is_refused(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with parallelq.scope(), self.assertRaisesMessage(TypeError, "coroutine"):
                parallel(lambda: lookup())
            self.assertNoCoroutineLeftUnawaited(caught)

    def test_a_callable_that_returns_an_async_generator_is_refused(self):
        with parallelq.scope(), self.assertRaisesMessage(TypeError, "async_generator"):
            parallel(lambda: rows())


class LimitTests(SimpleTestCase):
    def test_a_timeout_that_is_not_finite_is_a_type_error(self):
        for timeout in [float("inf"), 1e10, float("nan")]:
            with (
                self.subTest(timeout=timeout),
                parallelq.scope(),
                self.assertRaisesMessage(TypeError, "'timeout'"),
            ):
                parallel(lambda: 1, timeout=timeout)

    def test_a_timeout_setting_that_is_not_finite_is_e003(self):
        for timeout in [float("inf"), 1e10]:
            with self.subTest(timeout=timeout), override_settings(PARALLELQ={"TIMEOUT": timeout}):
                self.assertEqual([m.id for m in check_settings()], ["parallelq.E003"])
                with self.assertRaisesMessage(ImproperlyConfigured, "PARALLELQ['TIMEOUT']"):
                    get_settings()

    @override_settings(PARALLELQ={"STATEMENT_TIMEOUT": 3_000_000})
    def test_a_statement_timeout_past_postgresqls_limit_is_e003(self):
        # PostgreSQL refuses a statement_timeout over 2147483647 ms on every connection.
        self.assertEqual([m.id for m in check_settings()], ["parallelq.E003"])
        with self.assertRaisesMessage(ImproperlyConfigured, "(at most 2147483)"):
            get_settings()

    def test_pool_sizes_below_sqlalchemys_no_limit_are_e005(self):
        for key, size in [("pool_size", -1), ("max_overflow", -2)]:
            with (
                self.subTest(key=key),
                override_settings(PARALLELQ={"ENGINE_OPTIONS": {key: size}}),
            ):
                self.assertEqual([m.id for m in check_settings()], ["parallelq.E005"])
                with self.assertRaisesMessage(ImproperlyConfigured, f"['{key}']"):
                    get_settings()

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 0, "max_overflow": -1}})
    def test_sqlalchemys_no_limit_pool_sizes_are_accepted(self):
        self.assertEqual(check_settings(), [])
        self.assertEqual(get_settings().engine_options["pool_size"], 0)


class ClosedScopeTests(PostgresTestCase):
    def copied_task_context(self) -> contextvars.Context:
        def copy_after_a_query():
            session.execute(sa.text("SELECT 1"))
            return contextvars.copy_context()

        with parallelq.scope():
            [context] = parallel(copy_after_a_query)
        return context

    def test_a_copied_task_context_run_after_its_scope_raises_no_scope_error(self):
        context = self.copied_task_context()
        with self.assertRaises(parallelq.NoScopeError):
            context.run(lambda: session.execute(sa.text("SELECT 1")))
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_a_copied_task_context_run_in_another_thread_raises_no_scope_error(self):
        context = self.copied_task_context()
        with ThreadPoolExecutor(1) as thread:
            run = thread.submit(context.run, lambda: session.execute(sa.text("SELECT 1")))
            self.assertIsInstance(run.exception(timeout=10), parallelq.NoScopeError)
        self.assertEqual(get_engine().pool.checkedout(), 0)


class WarmedUpTests(PostgresTestCase):
    @override_settings(PARALLELQ={"MAX_WORKERS": 8})
    def test_after_200_trivial_calls_eight_sleeps_still_run_at_once(self):
        for _ in range(200):
            with parallelq.scope():
                parallel(*[lambda: session.execute(sa.text("SELECT 1")).scalar()] * 5)
        with parallelq.scope() as active:
            started = time.monotonic()
            parallel(*[lambda: sleep(0.2)] * 8)
            elapsed = time.monotonic() - started
        self.assertEqual(active.stats.max_concurrency, 8)
        self.assertLess(elapsed, 0.4)


class KilledProcessTests(PostgresTestCase):
    def test_each_connection_checks_for_its_client_every_second(self):
        with parallelq.scope():
            shown = parallel(
                lambda: session.scalar(sa.text("SHOW client_connection_check_interval"))
            )
        self.assertEqual(shown, ["1s"])

    def test_a_killed_process_leaves_no_statement_running(self):
        self.addCleanup(self.terminate_sleeps)
        self.assert_killed_process_leaves_no_statement_running({"MAX_WORKERS": 4})

    def terminate_sleeps(self):
        with connection.cursor() as cursor:
            for pid in self.running("pg_sleep(30)"):
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
