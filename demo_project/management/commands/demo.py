"""manage.py demo: seed the bookstore if needed and time its dashboard serially and in parallel."""

from __future__ import annotations

import statistics
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import parallelq
from demo_project.bookstore import PANELS, ensure_seeded
from demo_project.dashboard import measure


class Command(BaseCommand):
    help = "Time the demo dashboard's panels one by one and with parallelq.parallel()."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--latency-ms",
            type=int,
            default=100,
            help="Extra time each panel's query waits in the database (default 100).",
        )
        parser.add_argument(
            "--repeat",
            type=int,
            default=5,
            help="Runs per latency; the median is shown (default 5).",
        )

    def handle(self, *args: Any, latency_ms: int, repeat: int, **options: Any) -> None:
        if latency_ms < 0 or repeat < 1:
            self.stderr.write("--latency-ms must be at least 0 and --repeat at least 1.")
            raise SystemExit(2)
        engine = parallelq.get_engine()
        self.stdout.write(f"Database: {engine.url.render_as_string(hide_password=True)}")
        if ensure_seeded(engine):
            self.stdout.write("Seeded the bookstore (authors, books, reviews, orders).")
        self.stdout.write(
            f"Dashboard: {len(PANELS)} independent panel queries, median of {repeat} runs\n"
        )
        self.stdout.write(f"{'latency/query':>14} {'serial':>10} {'parallel':>10} {'speedup':>8}")
        for latency in sorted({0, latency_ms}):
            serial, par = self._time(latency / 1000, repeat)
            times = f"{serial * 1000:>7.1f} ms {par * 1000:>7.1f} ms"
            self.stdout.write(f"{latency:>11} ms {times} {serial / par:>7.1f}x")
        self.stdout.write(
            "\nSee it in a browser: python manage.py runserver, then open "
            f"http://127.0.0.1:8000/?latency_ms={latency_ms}"
        )

    def _time(self, latency: float, repeat: int) -> tuple[float, float]:
        runs = []
        for _ in range(repeat):
            with parallelq.scope() as scope:
                runs.append(measure(latency, scope.timeline))
        return (
            statistics.median(r.serial_seconds for r in runs),
            statistics.median(r.parallel_seconds for r in runs),
        )
