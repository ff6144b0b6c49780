"""Command line of the benchmark: ``python -m bench.compare --help``."""

from __future__ import annotations

import argparse
import datetime
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.compare import config, database, httpload, inprocess, machine, report, servers, wrk
from bench.compare.record import Run
from bench.compare.scenarios import IN_PROCESS

SCENARIOS = [s.key for s in IN_PROCESS] + ["http"]
RECORD = Path("docs/benchmarks.md")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Benchmark parallelq against serial, thread, asyncio and Django async "
        "peers on a throwaway PostgreSQL, interleaved in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions, short loads")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this (repeatable)"
    )
    parser.add_argument("--reps", type=_count, help="repetitions of every in-process scenario")
    parser.add_argument(
        "--http-seconds", type=_positive, help="length of one wrk run (10; quick 3)"
    )
    parser.add_argument(
        "--http-threads",
        type=_count,
        default=servers.GUNICORN_THREADS,
        help=f"gunicorn's request threads ({servers.GUNICORN_THREADS})",
    )
    parser.add_argument(
        "--http-reps", type=_count, help="wrk runs per contender and client count (5; quick 1)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"markdown file, charts go to img/ beside it (default: {RECORD} for a full run, "
        "a temp directory for --quick or --scenario runs)",
    )
    parser.add_argument(
        "--max-minutes", type=_positive, default=45, help="abort the run after this long (45)"
    )
    return parser.parse_args(argv)


def _output(args: argparse.Namespace) -> Path:
    if args.output is not None:
        return Path(args.output)
    if args.quick or args.scenario:
        return Path(tempfile.gettempdir()) / "parallelq-bench" / "benchmarks.md"
    return RECORD


def _http_plan(args: argparse.Namespace) -> httpload.HttpPlan:
    return httpload.HttpPlan(
        seconds=args.http_seconds or (3.0 if args.quick else 10.0),
        reps=args.http_reps or (1 if args.quick else 5),
        warmup=1.0 if args.quick else 3.0,
        threads=args.http_threads,
    )


def _abort(signum: int, frame: Any) -> None:
    # Raised in the main thread, so every finally block (servers, database) still runs.
    if signum == signal.SIGALRM:
        raise TimeoutError("the benchmark ran past --max-minutes")
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    keys = args.scenario or SCENARIOS
    if "http" in keys and not wrk.available():
        sys.exit("wrk is not on PATH: apt-get install -y wrk (or leave out --scenario http)")
    signal.signal(signal.SIGTERM, _abort)
    signal.signal(signal.SIGALRM, _abort)
    signal.alarm(max(1, round(args.max_minutes * 60)))
    record = Run(
        started=datetime.datetime.now(datetime.UTC),
        command=shlex.join(["python", "-m", "bench.compare", *argv]),
        quick=args.quick,
    )
    started, start = time.monotonic(), machine.at_start()
    with database.bench_database() as db:
        config.configure_django(db)
        inprocess.run(record, db, keys, args.reps)
        if "http" in keys:
            record.http_plan = _http_plan(args)
            print(f"HTTP load: {record.http_plan}", flush=True)
            record.http = httpload.run(db, record.http_plan)
        record.facts = machine.facts(database.server_version(db), start)
    signal.alarm(0)
    record.seconds = time.monotonic() - started
    output = _output(args)
    report.write(record, output)
    print(f"wrote {output} and its charts in {output.parent / 'img'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
