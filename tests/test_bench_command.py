"""manage.py parallelq_bench: serial against parallel() on the configured database."""

from __future__ import annotations

import os
import shutil
import tempfile
from io import StringIO

from django.core.management import CommandError, call_command
from django.test import override_settings

from parallelq import benchmark
from parallelq.engine import dispose_engine, get_engine
from tests.base import ParallelqTestCase, PostgresTestCase


class BenchCommandTests(PostgresTestCase):
    def test_prints_both_scenarios_with_serial_and_parallel_rows(self):
        out = StringIO()
        call_command(
            "parallelq_bench",
            "--fanout-tasks=3",
            "--sleep-ms=50",
            "--trivial-tasks=5",
            "--repeat=1",
            stdout=out,
        )
        text = out.getvalue()
        self.assertIn("Fan-out: 3 statements that each wait 50 ms", text)
        self.assertIn("Overhead: 5 × SELECT 1", text)
        self.assertEqual(text.count("  serial "), 2, text)
        self.assertEqual(text.count("  parallel "), 2, text)
        self.assertIn("as fast as serial", text)
        self.assertEqual(get_engine().pool.checkedout(), 0)

    def test_fanout_on_postgresql_is_at_least_twice_as_fast_as_serial(self):
        timings = benchmark.fanout(get_engine(), tasks=4, seconds=0.2, repeat=1)
        self.assertGreater(min(timings.serial), 0.8)  # four 0.2 s waits, one after another
        self.assertGreaterEqual(timings.speedup, 2.0)

    def test_the_trivial_statement_can_be_the_users_own(self):
        out = StringIO()
        call_command(
            "parallelq_bench",
            "--fanout-tasks=0",
            "--trivial-tasks=3",
            "--repeat=1",
            "--sql=SELECT count(*) FROM pg_class",
            stdout=out,
        )
        self.assertIn("Overhead: 3 × SELECT count(*) FROM pg_class", out.getvalue())
        self.assertNotIn("Fan-out", out.getvalue())

    def test_bad_arguments_are_refused_with_the_option_named(self):
        for argument, message in [
            ("--repeat=0", "--repeat must be at least 1, not 0."),
            ("--fanout-tasks=-1", "--fanout-tasks must be 0 or more, not -1."),
            ("--sleep-ms=-5", "--sleep-ms must be 0 or more, not -5."),
        ]:
            with self.subTest(argument), self.assertRaisesMessage(CommandError, message):
                call_command("parallelq_bench", argument, stdout=StringIO())

    def test_a_database_it_cannot_make_wait_is_named(self):
        with self.assertRaisesMessage(ValueError, "cannot make a mysql database wait"):
            benchmark.sleep_statement("mysql")


class BenchCommandSqliteTests(ParallelqTestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="parallelq-bench-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        path = os.path.join(tmp, "bench.sqlite3")
        overridden = override_settings(PARALLELQ={"DATABASE_URL": f"sqlite:///{path}"})
        overridden.enable()
        self.addCleanup(overridden.disable)
        self.addCleanup(dispose_engine)
        super().setUp()

    def test_fanout_on_sqlite_is_at_least_twice_as_fast_as_serial(self):
        timings = benchmark.fanout(get_engine(), tasks=4, seconds=0.2, repeat=1)
        self.assertGreater(min(timings.serial), 0.8)
        self.assertGreaterEqual(timings.speedup, 2.0)
