"""The capacity model of docs/scaling.md, as pure functions: no database, no Django.

`predict(costs, deployment)` gives one deployment's request latency (bench.capacity.latency)
and connection demand; `table(costs, deployment, SERVERS)` the same for 1 to 100 app
servers. Every time is in milliseconds. The terms, and the ones left out, are in
docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from bench.capacity.latency import Request, throughput

SERVERS = (1, 2, 5, 10, 20, 50, 100)
RESERVED = 3  # PostgreSQL's superuser_reserved_connections: max_connections less these


@dataclass(frozen=True)
class Costs:
    """What one request costs, measured (bench.capacity.calibrate) or given."""

    queries_ms: tuple[float, ...]  # each fan-out query's latency alone, on an open Session
    query_app_cpu_ms: tuple[float, ...]  # the app's CPU for each (SQLAlchemy, psycopg2)
    query_db_cpu_ms: tuple[float, ...]  # the database's CPU for each (about 0: it only waits)
    # Defaults: what bench.capacity measured here (2 cores, loopback, PostgreSQL 15).
    task_ms: float = 0.55  # what each task adds over its query, on the request's path
    task_app_cpu_ms: float = 0.35  # the app's CPU per task (Session, checkout, BEGIN, ROLLBACK)
    task_db_cpu_ms: float = 0.1  # the database's CPU per task beyond its query's
    request_ms: float = 1.2  # a request without its fan-out: HTTP, Django, the request's Session
    request_app_cpu_ms: float = 1.0  # its CPU in the app process
    request_db_cpu_ms: float = 0.13  # its CPU in the database
    client_cpu_ms: float = 0.0  # the load generator's CPU per request, on shared cores only
    round_trip_ms: float = 0.0  # network round trip app to database, beyond the measured one

    def __post_init__(self) -> None:
        if not len(self.queries_ms) == len(self.query_app_cpu_ms) == len(self.query_db_cpu_ms):
            raise ValueError("queries_ms and the CPU lists must have one entry per query")

    @property
    def app_cpu_ms(self) -> float:
        """Return the app's CPU per request: the request's, every task's and query's."""
        tasks = len(self.queries_ms) * self.task_app_cpu_ms
        return self.request_app_cpu_ms + tasks + sum(self.query_app_cpu_ms)

    @property
    def db_cpu_ms(self) -> float:
        """Return the database's CPU per request: the request's, every task's and query's."""
        tasks = len(self.queries_ms) * self.task_db_cpu_ms
        return self.request_db_cpu_ms + tasks + sum(self.query_db_cpu_ms)


@dataclass(frozen=True)
class Deployment:
    """How the app is deployed; `servers` app servers alike."""

    servers: int = 1
    processes: int = 4  # app processes per server (gunicorn workers)
    threads: int = 8  # request threads per process
    clients: int | None = None  # requests in flight per process (None: every thread busy)
    max_workers: int = 8  # PARALLELQ['MAX_WORKERS']
    pool_size: int = 15  # pool_size + max_overflow of parallelq's Engine
    request_session: bool = True  # the view uses the request's Session: one connection more
    django_connections: int = 0  # Django's own persistent connections per thread (0 or 1)
    django_in_tasks: bool = False  # tasks use the Django ORM: worker threads keep one each too
    app_cores: float = 4.0  # per app server
    db_cores: float = 8.0  # per database server
    replicas: int = 0  # read replicas parallelq's Engine spreads its connections over
    pgbouncer_pool: int | None = None  # PgBouncer's default_pool_size per database server
    max_client_conn: int = 500  # PgBouncer's, per database server
    max_connections: int = 100  # PostgreSQL's, per database server
    shared_cores: bool = False  # app, database and load generator share app_cores (1 server)

    @property
    def in_flight(self) -> int:
        """Return the requests in flight per process."""
        return self.threads if self.clients is None else self.clients


@dataclass(frozen=True)
class Prediction:
    """One deployment's figures; connections per database server unless said otherwise."""

    servers: int
    latency_ms: float  # mean request latency (math.inf: the pools stall)
    unloaded_ms: float  # the same request alone
    requests_per_second: float  # all servers together
    bound: str  # the bottleneck: a pool tasks wait for, or the busiest CPU (above 20%)
    app_connections: int  # parallelq's open pooled connections plus Django's, all servers
    db_client_connections: int  # parallelq's, to each database server (or its PgBouncer)
    busy_mean: float  # parallelq's transactions open at once on each database, on average
    busy_peak: int  # the most at once, every process at its widest (client side)
    server_connections: int  # backends on the database parallelq uses, Django's included
    flags: tuple[str, ...]


def predict(costs: Costs, plan: Deployment) -> Prediction:
    """Return the latency and connection demand of `plan`'s servers."""
    request = Request(costs, plan)
    n, processes, dbs = plan.in_flight, plan.servers * plan.processes, request.databases
    rps, latency, bound = throughput(request, n * processes)
    session = 1 if plan.request_session else 0
    wanted = n * (session + request.width)  # per process, every request at its widest
    pooled = min(plan.pool_size, wanted)  # a pool opens what its peak needs, and keeps it
    threads = plan.threads  # Django's connections, persistent (CONN_MAX_AGE > 0), go direct
    if plan.django_in_tasks:  # to the primary; so do those of worker threads that ran tasks
        threads += min(max(plan.pool_size, plan.max_workers), n * request.width)
    django = processes * plan.django_connections * threads
    client = math.ceil(processes * pooled / dbs)  # parallelq's, to each database (or PgBouncer)
    server = client if plan.pgbouncer_pool is None else min(client, plan.pgbouncer_pool)
    if plan.replicas == 0:
        server += django
    holding = session * latency + request.holding()
    busy_mean = min(rps * holding / 1000 / dbs, client) if rps else float(client)
    flags = _flags(plan, client, server, busy_mean, django)
    if wanted > plan.pool_size:
        flags = (f"pool: {n} requests want {wanted} > pool_size {plan.pool_size}", *flags)
    return Prediction(
        servers=plan.servers,
        latency_ms=latency,
        unloaded_ms=request.free(0.0),
        requests_per_second=rps,
        bound=bound,
        app_connections=processes * pooled + django,
        db_client_connections=client,
        busy_mean=busy_mean,
        busy_peak=client,
        server_connections=server,
        flags=flags,
    )


def _flags(
    plan: Deployment, client: int, server: int, busy_mean: float, primary: int
) -> tuple[str, ...]:
    limit = plan.max_connections - RESERVED
    flags = []
    if server > limit:
        flags.append(f"max_connections: {server} > {limit}")
    if plan.replicas and primary > limit:
        flags.append(f"max_connections on the primary (Django's): {primary} > {limit}")
    if plan.pgbouncer_pool is not None:
        if client > plan.max_client_conn:
            flags.append(f"max_client_conn: {client} > {plan.max_client_conn}")
        sessions = plan.servers * plan.processes * plan.in_flight * plan.request_session
        if sessions / max(plan.replicas, 1) >= plan.pgbouncer_pool:
            flags.append(
                f"PgBouncer pool: the requests' own Sessions hold all {plan.pgbouncer_pool}; "
                "tasks wait for query_wait_timeout"
            )
        elif busy_mean > plan.pgbouncer_pool:
            flags.append(f"PgBouncer pool: {busy_mean:.0f} busy on average > {plan.pgbouncer_pool}")
        elif client > plan.pgbouncer_pool:
            flags.append(f"PgBouncer pool: peaks of {client} queue > {plan.pgbouncer_pool}")
    if plan.request_session and plan.in_flight >= plan.pool_size:
        flags.append(f"pool_size {plan.pool_size} <= requests in flight: tasks wait pool_timeout")
    return tuple(flags)


def table(costs: Costs, plan: Deployment, servers: tuple[int, ...] = SERVERS) -> list[Prediction]:
    """Return `plan`'s predictions for each number of app servers in `servers`."""
    return [predict(costs, dataclasses.replace(plan, servers=n)) for n in servers]
