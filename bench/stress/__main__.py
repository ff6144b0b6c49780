"""Parse the arguments, run the stress phases in order and print the report: ``main()``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import bench.stress
from bench.stress.app import configure_django, start_server
from bench.stress.checks import quiesce, settle
from bench.stress.db import create_database, drop_database, prepare_schema
from bench.stress.load import SCHEDULE, WARMUP, Budget, FaultThread, drive
from bench.stress.report import (
    error_figures,
    fault_figures,
    leak_figures,
    report,
    response_figures,
)
from bench.stress.tally import SERVER


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stress", description=bench.stress.__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=2000, help="most requests to send")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--seconds", type=float, default=60.0, help="most seconds to send for")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    return parser.parse_args(argv)


def stress(args: argparse.Namespace, db: dict[str, Any]) -> int:
    prepare_schema()
    server, port = start_server()
    try:
        warm = drive(port, args.clients, Budget(args.clients * len(WARMUP), 30), WARMUP)
        baseline, before = quiesce(), SERVER.counts.copy()
        faults = FaultThread(db)
        faults.start()
        try:
            run = drive(port, args.clients, Budget(args.requests, args.seconds), SCHEDULE)
        finally:
            faults.stop()
        state, waited = settle(faults.conn, baseline)
        faults.conn.close()
    finally:
        server.shutdown()
        server.server_close()
    figures = (
        response_figures(warm, run)
        + fault_figures(faults, run, SERVER.counts - before)
        + error_figures(warm, run, faults)
        + leak_figures(state, baseline, waited, warm.acked + run.acked, faults.peak)
    )
    return report(figures, args.markdown)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = create_database()  # tests.pg stops its cluster at exit
    try:
        configure_django(db)
        print(f"stress: {args.requests} requests, {args.clients} clients, {args.seconds:g} s max")
        return stress(args, db)
    finally:
        drop_database(db)


if __name__ == "__main__":
    sys.exit(main())
