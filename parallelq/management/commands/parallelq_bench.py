"""manage.py parallelq_bench: time serial code against parallel() on this project's database."""

from __future__ import annotations

import statistics
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from parallelq import benchmark
from parallelq.conf import get_settings
from parallelq.engine import get_engine


class Command(BaseCommand):
    help = (
        "Time independent statements run one after another against the same run with "
        "parallelq.parallel(), on the database PARALLELQ is configured for: a fan-out of "
        "statements that wait in the database, and trivial statements (what each task costs)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fanout-tasks",
            type=int,
            default=5,
            help="Statements in the fan-out; 0 skips it (default 5).",
        )
        parser.add_argument(
            "--sleep-ms",
            type=float,
            default=100.0,
            help="How long each fan-out statement waits in the database (default 100).",
        )
        parser.add_argument(
            "--trivial-tasks",
            type=int,
            default=50,
            help="Trivial statements in the overhead run; 0 skips it (default 50).",
        )
        parser.add_argument(
            "--sql",
            default="SELECT 1",
            help="The trivial statement; make it one of your own cheap queries (default "
            "'SELECT 1'). It must only read: it runs many times.",
        )
        parser.add_argument(
            "--repeat",
            type=int,
            default=10,
            help="Timed runs of each contender per scenario, interleaved (default 10).",
        )

    def handle(
        self,
        *args: Any,
        fanout_tasks: int,
        sleep_ms: float,
        trivial_tasks: int,
        sql: str,
        repeat: int,
        **options: Any,
    ) -> None:
        for name, value in [
            ("--fanout-tasks", fanout_tasks),
            ("--trivial-tasks", trivial_tasks),
            ("--sleep-ms", sleep_ms),
        ]:
            if value < 0:
                raise CommandError(f"{name} must be 0 or more, not {value:g}.")
        if repeat < 1:
            raise CommandError(f"--repeat must be at least 1, not {repeat}.")
        engine = get_engine()
        conf = get_settings()
        options_ = conf.engine_options
        self.stdout.write(
            f"Database: {engine.url.render_as_string(hide_password=True)}\n"
            f"pool_size {options_.get('pool_size')}, max_overflow {options_.get('max_overflow')}, "
            f"MAX_WORKERS {conf.MAX_WORKERS}; {repeat} timed runs per contender, interleaved.\n"
            "serial: the statements one after another on one Session; parallel: each a task "
            "of parallel().\n"
        )
        if fanout_tasks:
            try:
                benchmark.sleep_statement(engine.url.get_backend_name())
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self._fanout(engine, fanout_tasks, sleep_ms / 1000, repeat)
        if trivial_tasks:
            self._overhead(sql, trivial_tasks, repeat)

    def _fanout(self, engine: Any, tasks: int, seconds: float, repeat: int) -> None:
        self.stdout.write(f"Fan-out: {tasks} statements that each wait {seconds * 1000:g} ms")
        timings = benchmark.fanout(engine, tasks, seconds, repeat)
        self._table(timings, limit=seconds)
        self.stdout.write(f"parallel() was {timings.speedup:.1f}× as fast as serial.\n")

    def _overhead(self, sql: str, tasks: int, repeat: int) -> None:
        self.stdout.write(f"Overhead: {tasks} × {sql}")
        timings = benchmark.overhead(sql, tasks, repeat)
        self._table(timings, limit=None)
        per_task = timings.overhead_per_task(tasks) * 1e6
        serial_each = statistics.median(timings.serial) / tasks * 1e6
        self.stdout.write(
            f"Each statement costs {serial_each:.0f} µs serially; as a task of parallel() "
            f"{per_task:+.0f} µs more ({'slower' if per_task > 0 else 'faster'}). A task "
            "opens and ends a Session and lends a connection: fan out statements that take "
            "longer than that, and keep trivial ones together in one task.\n"
        )

    def _table(self, timings: benchmark.Timings, limit: float | None) -> None:
        header = f"  {'':<9} {'median':>10} {'min':>10} {'max':>10}"
        self.stdout.write(header + (f" {'× limit':>8}" if limit else ""))
        for name, runs in [("serial", timings.serial), ("parallel", timings.parallel)]:
            median = statistics.median(runs)
            row = f"  {name:<9}" + "".join(
                f" {value * 1000:>7.1f} ms" for value in (median, min(runs), max(runs))
            )
            self.stdout.write(row + (f" {median / limit:>7.2f}×" if limit else ""))
