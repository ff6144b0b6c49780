"""The capacity model of docs/scaling.md, as pure functions: no database, no Django.

`predict(costs, deployment)` gives one deployment's request latency and connection
demand; `table(costs, deployment, SERVERS)` the same for 1 to 100 app servers. Every
time is in milliseconds. The terms, and the ones left out, are in docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass

SERVERS = (1, 2, 5, 10, 20, 50, 100)
RESERVED = 3  # PostgreSQL's superuser_reserved_connections: max_connections less these
SATURATED = 0.9  # a CPU this busy is named as what bounds the latency
ROUND_TRIPS_PER_TASK = 3  # BEGIN, the statement, ROLLBACK: what a remote database adds RTTs to


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


def makespan(durations: list[float], width: int) -> float:
    """Return when the last task ends, tasks taken in order by `width` slots (waves)."""
    slots = [0.0] * min(width, len(durations))
    for duration in durations:
        heapq.heapreplace(slots, slots[0] + duration)  # the slot free first takes the next
    return max(slots, default=0.0)


def _stretch(utilisation: float, cores: float) -> float:
    """Return how much longer CPU work takes on `cores` this busy: 1 / (1 - U^cores).

    The usual approximation of a queue with `cores` servers (exact for one and two).
    """
    return math.inf if utilisation >= 1 else 1 / (1 - utilisation ** max(cores, 1.0))


def _packed(waiting: float, holding: float, session: float, capacity: float) -> float:
    """Return the least mean latency `capacity` connections allow `waiting` requests.

    Each request holds `session` connections for its whole latency R (its own Session)
    and its tasks hold one each for `holding` ms in all; with every connection always
    in use, n·(session·R + holding) = C·R, so R = n·holding / (C - n·session).
    """
    free = capacity - waiting * session
    return math.inf if free <= 0 else waiting * holding / free


class _Path:
    """A request's path at one throughput: its own part, its tasks' holds, CPU stretch."""

    def __init__(self, request: float, holds: list[float], task: float) -> None:
        self.request, self.holds, self.task = request, holds, task

    def through(self, lanes: int) -> float:
        """Return the latency with `lanes` tasks at once: waves, tasks started one by one."""
        lanes = max(1, min(lanes, len(self.holds)))
        return self.request + makespan(self.holds, lanes) + (lanes - 1) * self.task


class _Request:
    """The latency of one request at a given throughput (requests per second in all)."""

    def __init__(self, costs: Costs, plan: Deployment) -> None:
        self.costs, self.plan = costs, plan
        self.width = min(plan.max_workers, len(costs.queries_ms)) or 1
        self.databases = max(plan.replicas, 1)
        self.session = 1.0 if plan.request_session else 0.0

    def utilisations(self, rps: float) -> dict[str, float]:
        c, p = self.costs, self.plan
        per_process = rps / (p.servers * p.processes)
        used = {
            "GIL": per_process * c.app_cpu_ms / 1000,
            "app CPU": rps / p.servers * c.app_cpu_ms / 1000 / p.app_cores,
            "db CPU": rps / self.databases * c.db_cpu_ms / 1000 / p.db_cores,
        }
        if p.shared_cores:
            total = c.app_cpu_ms + c.db_cpu_ms + c.client_cpu_ms
            used["app CPU"] = used["db CPU"] = rps * total / 1000 / p.app_cores
        return used

    def path(self, rps: float) -> _Path | None:
        """Return the request's path at `rps`, None where a CPU is saturated."""
        c = self.costs
        used = self.utilisations(rps)
        p = self.plan
        app = max(_stretch(used["GIL"], 1), _stretch(used["app CPU"], p.app_cores))
        db = _stretch(used["db CPU"], p.app_cores if p.shared_cores else p.db_cores)
        if math.isinf(app) or math.isinf(db):
            return None

        def extra(app_cpu: float, db_cpu: float) -> float:  # CPU work takes app (db) × as long
            return app_cpu * (app - 1) + db_cpu * (db - 1)

        queries = zip(c.queries_ms, c.query_app_cpu_ms, c.query_db_cpu_ms, strict=True)
        holds = [
            q
            + c.task_ms
            + extra(a + c.task_app_cpu_ms, d + c.task_db_cpu_ms)
            + ROUND_TRIPS_PER_TASK * c.round_trip_ms
            for q, a, d in queries
        ]
        request = c.request_ms + 2 * c.round_trip_ms  # its Session's BEGIN and ROLLBACK
        request += extra(c.request_app_cpu_ms, c.request_db_cpu_ms)
        # A wave's tasks start one after another: their overheads take turns at the GIL.
        return _Path(request, holds, c.task_ms + c.task_app_cpu_ms * (app - 1))

    def holding(self) -> float:
        """Return the connection time a request's tasks hold in all, unloaded (ms)."""
        path = self.path(0.0)
        assert path is not None  # nothing is saturated at no load
        return sum(path.holds)

    def free(self, rps: float) -> float:
        """Return the mean latency at `rps` if every task found a connection."""
        path = self.path(rps)
        return math.inf if path is None else path.through(self.width)

    def _pooled(self, path: _Path, waiting: float, capacity: int) -> float:
        """Return the latency `capacity` connections allow `waiting` requests (math.inf: none).

        Two estimates bracket it: every connection always in use (`_packed`, too low),
        and every request getting only its fair share of the pool, rounded up to whole
        connections, as its lanes (mostly too high); the model takes their mean, and
        never less than the first: it is a hard bound.
        """
        share = capacity / waiting - self.session
        if share >= self.width:
            return 0.0  # every request finds the connections it asks for
        packed = _packed(waiting, sum(path.holds), self.session, capacity)
        if share <= 0 or math.isinf(packed):
            return math.inf
        # Its share in whole connections as lanes; below one connection a request gets
        # no lane of its own, and packing is all there is. Nothing beats packing.
        fair = path.through(math.ceil(share)) if share >= 1 else packed
        return (packed + max(packed, fair)) / 2

    def latency(self, rps: float) -> tuple[float, str]:
        """Return the mean latency at `rps`, and what bounds it."""
        p = self.plan
        path = self.path(rps)
        if path is None:
            return math.inf, "CPU"
        free = path.through(self.width)
        bounds = {"pool": self._pooled(path, p.in_flight, p.pool_size)}
        if p.pgbouncer_pool is not None:
            everyone = p.in_flight * p.servers * p.processes / self.databases
            bounds["PgBouncer"] = self._pooled(path, everyone, p.pgbouncer_pool)
        name, worst = max(bounds.items(), key=lambda item: item[1])
        used = self.utilisations(rps)
        busiest = max(used, key=lambda k: used[k])
        if used[busiest] >= SATURATED:  # it lengthens every hold, and so the pools' waits
            return max(worst, free), busiest
        if worst > free:
            return worst, name
        return free, busiest if used[busiest] > 0.2 else "none"


def _throughput(request: _Request, in_flight: int) -> tuple[float, float, str]:
    """Solve rps · R(rps) = requests in flight (a closed loop) by bisection.

    Returns the requests per second, the mean latency (in flight / rps: Little's law,
    which also holds where a CPU saturates and R(rps) jumps) and what bounds it.
    """

    def short(rps: float) -> bool:
        return rps * request.latency(rps)[0] / 1000 < in_flight

    low, high = 0.0, 1.0
    while high < 1e9 and short(high):
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if short(middle) else (low, middle)
    latency, bound = request.latency(low)
    if low == 0 or math.isinf(latency):
        return 0.0, math.inf, bound
    if 1000 * in_flight / low > 1.01 * latency:  # requests queue for a saturated CPU
        used = request.utilisations(low)
        return low, 1000 * in_flight / low, max(used, key=lambda k: used[k])
    return low, latency, bound


def predict(costs: Costs, plan: Deployment) -> Prediction:
    """Return the latency and connection demand of `plan`'s servers."""
    request = _Request(costs, plan)
    n, processes, dbs = plan.in_flight, plan.servers * plan.processes, request.databases
    rps, latency, bound = _throughput(request, n * processes)
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
