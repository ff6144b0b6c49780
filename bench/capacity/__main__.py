"""Command line of the capacity model: ``python -m bench.capacity {predict,measure} --help``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import statistics
import sys
from typing import Any

from bench.capacity import calibrate, measure, model, report
from bench.compare import config, database, machine, wrk
from tests import pgbouncer

DISTURBED = 0.15  # runs of one configuration this far apart (max - min over median) ...
EXTRA_RUNS = 2  # ... get up to this many more
QUERY_APP_CPU_MS = 0.3  # a given query's app CPU: SQLAlchemy and psycopg2, one small row
DESCRIPTION = """\
Predict a parallelq deployment's request latency and database connections for 1 to 100
app servers, from per-query latencies (measured here on a throwaway PostgreSQL, or given),
or measure 1-4 gunicorn processes on loopback beside the prediction. The model is in
docs/scaling.md."""


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _milliseconds(text: str) -> list[float]:
    """Read '5x20' (five queries of 20 ms) or '20,35,50' (one query each)."""
    try:
        if "x" in text:
            count, ms = text.split("x")
            values = [float(ms)] * int(count)
        else:
            values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 5x20 or 20,35,50, not {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected one or more times >= 0 ms, not {text!r}")
    return values


def _settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the fan-out")
    group.add_argument(
        "--fanout",
        type=_milliseconds,
        default=[20.0] * 5,
        metavar="KxMS|MS,MS,…",
        help="the request's parallel() queries, measured as pg_sleep (default 5x20)",
    )
    group.add_argument("--max-workers", type=_count, default=8, help="MAX_WORKERS (8)")
    group.add_argument("--pool-size", type=_count, default=15, help="pool_size+max_overflow (15)")
    group.add_argument(
        "--no-request-session",
        dest="request_session",
        action="store_false",
        help="the view runs no statement of its own (its Session holds no connection)",
    )
    group.add_argument("--threads", type=_count, default=8, help="request threads per process (8)")


def _deployment(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the deployment")
    group.add_argument("--processes", type=_count, default=4, help="per app server (4)")
    group.add_argument(
        "--clients", type=_count, help="requests in flight per process (default: --threads)"
    )
    group.add_argument(
        "--django-connections",
        type=int,
        default=0,
        choices=(0, 1),
        help="Django's persistent connections (CONN_MAX_AGE > 0) per request thread (0)",
    )
    group.add_argument(
        "--django-in-tasks",
        action="store_true",
        help="tasks use the Django ORM: worker threads keep a Django connection each too",
    )
    group.add_argument("--app-cores", type=float, default=4.0, help="per app server (4)")
    group.add_argument("--db-cores", type=float, default=8.0, help="per database server (8)")
    group.add_argument(
        "--replicas", type=int, default=0, help="read replicas parallelq's Engine spreads over (0)"
    )
    group.add_argument("--pgbouncer-pool", type=_count, help="default_pool_size (no PgBouncer)")
    group.add_argument("--max-client-conn", type=_count, default=500, help="PgBouncer's (500)")
    group.add_argument("--max-connections", type=_count, default=100, help="PostgreSQL's (100)")
    group.add_argument(
        "--round-trip-ms", type=float, default=0.0, help="app to database, beyond loopback (0)"
    )
    group.add_argument("--servers", type=_milliseconds, help="default 1,2,5,10,20,50,100")


def _costs(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("given costs (skip measuring)")
    group.add_argument(
        "--query-ms",
        type=_milliseconds,
        help="each query's latency alone, e.g. from pg_stat_statements plus a round trip",
    )
    group.add_argument("--query-db-cpu-ms", type=_milliseconds, help="each query's database CPU")
    defaults = model.Costs((), (), ())
    for name in ("task_ms", "task_app_cpu_ms", "request_ms", "request_app_cpu_ms"):
        flag = "--" + name.replace("_", "-")
        value = getattr(defaults, name)
        group.add_argument(flag, type=float, default=value, help=f"({value}, measured here)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="print the predictions for 1 to 100 app servers",
        description="Measure the fan-out's queries and a task's overhead on a throwaway "
        "PostgreSQL (or take --query-ms), then print latency and connections per server count.",
    )
    for add in (_settings, _deployment, _costs):
        add(predict)
    run = commands.add_parser(
        "measure",
        help="measure 1-N gunicorn processes on loopback beside the model's prediction",
        description="Start a throwaway PostgreSQL and --processes gunicorns (one gthread "
        "worker each, own port, own wrk with --clients connections), load 1..N of them in "
        "turn for --reps rounds, and print a markdown table of measured against predicted.",
    )
    _settings(run)
    run.add_argument("--processes", type=_count, default=4, help="load 1 to this many (4)")
    run.add_argument("--clients", type=_count, default=2, help="wrk connections per process (2)")
    run.add_argument("--seconds", type=float, default=4.0, help="one load (4)")
    run.add_argument("--reps", type=_count, default=3, help="rounds over 1..N processes (3)")
    run.add_argument(
        "--pgbouncer-pool",
        type=_count,
        help="connect through a throwaway PgBouncer (transaction mode) of this default_pool_size",
    )
    run.add_argument("--max-minutes", type=float, default=15.0, help="abort after (15)")
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace, **overrides: Any) -> model.Deployment:
    fields = {f.name for f in dataclasses.fields(model.Deployment)} - {"servers"}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return model.Deployment(**{**given, **overrides})


def _parallelq(args: argparse.Namespace, pooler: Any = None) -> dict[str, Any]:
    settings = {"MAX_WORKERS": args.max_workers, "ENGINE_OPTIONS": {"pool_size": args.pool_size}}
    if pooler is not None:
        settings.update(DATABASE_URL=pooler.url(pooler.db["NAME"]), TRANSACTION_POOLING=True)
    return settings


def _measured_costs(
    db: dict[str, Any], args: argparse.Namespace, pooler: Any = None
) -> model.Costs:
    calibration = _parallelq(args, pooler)
    calibration["ENGINE_OPTIONS"]["connect_args"] = {"application_name": "bench-calibrate"}
    config.configure_django(db, parallelq=calibration)
    return calibrate.measure(args.fanout, min(args.max_workers, len(args.fanout)))


def _given_costs(args: argparse.Namespace) -> model.Costs:
    cpu = args.query_db_cpu_ms or [0.0] * len(args.query_ms)
    if len(cpu) != len(args.query_ms):
        sys.exit("--query-db-cpu-ms needs one value per --query-ms value")
    return model.Costs(
        queries_ms=tuple(args.query_ms),
        query_app_cpu_ms=(QUERY_APP_CPU_MS,) * len(args.query_ms),
        query_db_cpu_ms=tuple(cpu),
        task_ms=args.task_ms,
        task_app_cpu_ms=args.task_app_cpu_ms,
    )


def predict(args: argparse.Namespace) -> int:
    if args.query_ms is not None:
        costs = _given_costs(args)
    else:
        with database.bench_database() as db:
            costs = _measured_costs(db, args)
    costs = dataclasses.replace(
        costs,
        request_ms=args.request_ms,
        request_app_cpu_ms=args.request_app_cpu_ms,
        round_trip_ms=args.round_trip_ms,
    )
    plan = _plan(args)
    servers = tuple(int(n) for n in args.servers) if args.servers else model.SERVERS
    print(report.costs(costs), report.deployment(plan), "", sep="\n")
    print(report.predictions(model.table(costs, plan, servers)))
    return 0


def _spread(samples: list[measure.Measured]) -> float:
    means = [s.mean_ms for s in samples]
    return (max(means) - min(means)) / statistics.median(means)


def _abort(signum: int, frame: Any) -> None:
    raise TimeoutError("the measured run went past --max-minutes")


def measured_run(args: argparse.Namespace) -> int:
    if not wrk.available():
        sys.exit("wrk is not on PATH: apt-get install -y wrk")
    signal.signal(signal.SIGALRM, _abort)
    signal.alarm(max(1, round(args.max_minutes * 60)))
    start = machine.at_start()
    runs: dict[int, list[measure.Measured]] = {n: [] for n in range(1, args.processes + 1)}
    with database.bench_database() as db, contextlib.ExitStack() as stack:
        pooler = None
        if args.pgbouncer_pool is not None:
            pooler = pgbouncer.PgBouncer(db, args.pgbouncer_pool)
            stack.callback(pooler.stop)
        costs = _measured_costs(db, args, pooler)
        pq = _parallelq(args, pooler)
        servers = stack.enter_context(
            measure.serving(db, args.processes, args.threads, pq, args.fanout, args.request_session)
        )
        costs = calibrate.with_request(costs, servers[0], args.seconds)
        for server in servers:  # warm: every pool opened to its peak
            measure.load(db, [server], args.clients, 1.0, pooler)
        for rep in range(args.reps):
            for count in runs:
                result = measure.load(db, servers[:count], args.clients, args.seconds, pooler)
                runs[count].append(result)
                print(f"round {rep + 1}, {count} processes: {result}", flush=True)
        for count, samples in runs.items():  # a disturbed configuration gets more runs
            while _spread(samples) > DISTURBED and len(samples) < args.reps + EXTRA_RUNS:
                result = measure.load(db, servers[:count], args.clients, args.seconds, pooler)
                samples.append(result)
                print(f"again, {count} processes: {result}", flush=True)
    signal.alarm(0)
    cores = len(os.sched_getaffinity(0))
    predicted = {
        n: model.predict(
            costs,
            _plan(args, processes=n, app_cores=cores, shared_cores=True, max_connections=200),
        )
        for n in runs
    }
    facts = machine.facts("", start)
    print(f"\nparallelq at {facts['parallelq (git)']}; {args}\n")
    print(report.costs(costs), "", report.measured(runs, predicted, costs), sep="\n")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return predict(args) if args.command == "predict" else measured_run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
