"""Stress parallelq over real HTTP while injecting faults, then check that nothing leaked.

Run from the repository root (not part of the test suite):

    python bench/stress.py [--requests N] [--clients C] [--seconds S] [--markdown]

What it does:

1. Starts a throwaway PostgreSQL cluster with ``tests.pg.database_settings()`` (or uses
   PARALLELQ_TEST_DATABASE_URL), creates a database for the run, configures Django in-process
   with ``ParallelQueryMiddleware`` and seeds the demo bookstore.
2. Serves this module's URLs with a threaded ``wsgiref`` server on a free loopback port, through
   ``get_wsgi_application()``, so ``request_finished`` fires when the response is closed.
3. Drives it with C client threads (``http.client``) until N requests are sent or S seconds pass,
   mixing the demo dashboard, a committed write, a task that raises (fail-fast, 500), a
   ``parallel(timeout=0.2)`` over ``pg_sleep(5)`` (handled as 504), and a ``pg_sleep(2)`` task
   whose backend a fault thread kills with ``pg_terminate_backend``.
4. Waits a bounded time for teardown, then checks: no leaked threads, no connection checked out,
   backends within the pool's capacity, no idle-in-transaction backend, every request's scope
   closed with no Session left, no ``pg_sleep`` still running, and no acknowledged write lost.
   It also requires every response to have the status its view should give, every 500 to carry
   the exception injected for it (not another), no client error, no ERROR logged by parallelq or
   SQLAlchemy's pool, and at least one terminated backend if ``/long/`` was requested.

It prints the figures (as a markdown table with ``--markdown``) and a last line ``stress: OK`` or
``stress: FAILED (reasons)``; the exit status is non-zero on failure. Every socket has a timeout
and every phase is bounded, so the run stops by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/stress.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

# ruff: noqa: E402
import argparse
import collections
import http.client
import json
import logging
import os
import random
import socketserver
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
import psycopg2
import sqlalchemy as sa
from django.conf import settings
from django.core.signals import got_request_exception
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from demo_project import settings as demo_settings
from demo_project.bookstore import ensure_seeded
from demo_project.views import dashboard
from parallelq import Timeout, get_engine, parallel, session
from tests import pg

PARALLELQ = {
    "MAX_WORKERS": 8,
    "TIMEOUT": None,
    "ENGINE_OPTIONS": {"pool_size": 10, "max_overflow": 5, "pool_timeout": 5},
}
POOL_CAPACITY = sum(PARALLELQ["ENGINE_OPTIONS"][key] for key in ("pool_size", "max_overflow"))
WORKER_THREADS = max(PARALLELQ["MAX_WORKERS"], POOL_CAPACITY)  # per the README
SOCKET_TIMEOUT = 20.0  # seconds, every HTTP and PostgreSQL socket
FAULT_POLL = 0.1  # seconds between the fault thread's looks at pg_stat_activity
SETTLE_SECONDS = 3.0  # the most we wait for teardown after the last response
ROWS = sa.Table(
    "stress_write",
    sa.MetaData(),
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("written_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)


# --- What the server sees ----------------------------------------------------------------


class Tally:
    """A thread-safe Counter, plus the scopes of every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.scopes: list[Any] = []  # parallelq Scopes

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def keep(self, scope: Any) -> None:
        with self._lock:
            self.scopes.append(scope)


SERVER = Tally()  # "fault: ...", "exception <kind>: <type>", "log <logger> <LEVEL>: <message>"


class RecordScopes:
    """Middleware after ParallelQueryMiddleware: remember each request's scope for the checks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        SERVER.keep(request.parallelq)  # type: ignore[attr-defined]
        return self.get_response(request)


def _record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    exc = sys.exc_info()[1]
    kind = PATH_KIND.get(request.path, request.path) if request is not None else "?"
    SERVER.add(f"exception {kind}: {describe(exc)}")


def describe(exc: BaseException | None) -> str:
    """Name an exception; a SQLAlchemy DBAPIError also by the driver's error it wraps."""
    if exc is None:
        return "None"
    orig = getattr(exc, "orig", None)
    return type(exc).__name__ + (f"/{type(orig).__name__}" if orig is not None else "")


@sa.event.listens_for(sa.pool.Pool, "connect")
def _count_connect(dbapi_connection: Any, record: Any) -> None:
    SERVER.add("pool: connections opened")


@sa.event.listens_for(sa.pool.Pool, "invalidate")
def _count_invalidate(dbapi_connection: Any, record: Any, exception: Any) -> None:
    SERVER.add("pool: connections invalidated")


class TallyLog(logging.Handler):
    """Count parallelq's and SQLAlchemy's pool log records instead of printing them."""

    def emit(self, record: logging.LogRecord) -> None:
        first_line = record.getMessage().splitlines()[0][:120]
        SERVER.add(f"log {record.name} {record.levelname}: {first_line}")


# --- Views -------------------------------------------------------------------------------


class InjectedFault(Exception):
    """Raised on purpose by a task of the /fail/ view."""


def sleep(seconds: float) -> None:
    """Make the task's backend wait; the fault thread looks for 'pg_sleep(2)' in its query."""
    session.execute(sa.select(sa.func.pg_sleep(seconds)))


def count_rows() -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(ROWS)))


def write(request: HttpRequest) -> HttpResponse:
    """Commit one row with a fresh id in a task; answer the id only once it is committed."""
    row_id = uuid.uuid4().hex

    def insert() -> str:
        session.execute(sa.insert(ROWS).values(id=row_id))
        session.commit()
        return row_id

    done = parallel(insert=insert, rows=count_rows)
    return JsonResponse({"id": done["insert"]})


def fail(request: HttpRequest) -> HttpResponse:
    """One task raises while a sibling sleeps: parallel() should raise that error at once."""

    def boom() -> None:
        session.scalar(sa.select(1))
        SERVER.add("fault: failing tasks")
        raise InjectedFault("raised on purpose by bench/stress.py")

    parallel(slow=lambda: sleep(1.0), boom=boom, rows=count_rows)
    return HttpResponse("parallel() returned although a task raised", status=200)


def time_out(request: HttpRequest) -> HttpResponse:
    """A 5 s query under a 0.2 s timeout: answered as 504 once parallel() raises Timeout."""
    try:
        parallel(sleep=lambda: sleep(5), timeout=0.2)
    except Timeout:
        SERVER.add("fault: timeouts")
        return HttpResponse("timed out\n", status=504)
    return HttpResponse("pg_sleep(5) finished within 0.2 s?", status=200)


def long_query(request: HttpRequest) -> HttpResponse:
    """A 2 s query the fault thread terminates: a 500, or 200 if it escaped the kill.

    It is text(), as much application code is: parallelq then asks PostgreSQL whether the
    task's transaction wrote anything before it ends the Session.
    """
    parallel(long=lambda: session.execute(sa.text("SELECT pg_sleep(2)")).scalar(), rows=count_rows)
    return HttpResponse("survived\n")


urlpatterns = [
    path("", dashboard),  # the demo's own view
    path("write/", write),
    path("fail/", fail),
    path("timeout/", time_out),
    path("long/", long_query),
]


@dataclass(frozen=True)
class Kind:
    """A kind of request the clients send, and what a correct answer to it is."""

    path: str
    weight: int  # out of 20
    statuses: frozenset[int]
    exceptions: frozenset[str] = frozenset()  # server-side exceptions expected behind a 500


KINDS = {
    "dashboard": Kind("/?latency_ms=20", 8, frozenset({200})),
    "write": Kind("/write/", 5, frozenset({200})),
    "fail": Kind("/fail/", 3, frozenset({500}), frozenset({"InjectedFault"})),
    "timeout": Kind("/timeout/", 2, frozenset({504})),
    # A terminated backend surfaces as AdminShutdown, or as a plain OperationalError when
    # the driver sees the socket close first.
    "long": Kind(
        "/long/",
        2,
        frozenset({200, 500}),
        frozenset({"OperationalError/AdminShutdown", "OperationalError/OperationalError"}),
    ),
}
PATH_KIND = {urlsplit(k.path).path: name for name, k in KINDS.items()}
SCHEDULE = [name for name, k in KINDS.items() for _ in range(k.weight)]
random.Random(2026).shuffle(SCHEDULE)
WARMUP = ["dashboard", "write", "fail", "timeout", "dashboard"]


# --- Database and Django -----------------------------------------------------------------


def connect(db: dict[str, Any], name: str | None = None) -> Any:
    """Open an autocommit psycopg2 connection whose statements time out."""
    conn = psycopg2.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname=name or db["NAME"],
        connect_timeout=int(SOCKET_TIMEOUT),
        options=f"-c statement_timeout={int(SOCKET_TIMEOUT * 1000)}",
    )
    conn.autocommit = True
    return conn


def create_database() -> dict[str, Any]:
    """Start (or reach) the PostgreSQL server and create a database for this run."""
    base = pg.database_settings()
    admin = base["NAME"] if os.environ.get("PARALLELQ_TEST_DATABASE_URL") else "postgres"
    name = f"parallelq_stress_{os.getpid()}"
    conn = connect(base, admin)
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return {**base, "NAME": name, "ADMIN_DB": admin}


def drop_database(db: dict[str, Any]) -> None:
    get_engine().dispose()  # PostgreSQL drops no database with open connections
    conn = connect(db, db["ADMIN_DB"])
    try:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
    finally:
        conn.close()


def configure_django(db: dict[str, Any]) -> None:
    database = {k: v for k, v in db.items() if k != "ADMIN_DB"}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="stress-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["parallelq", "demo_project"],
        MIDDLEWARE=["parallelq.middleware.ParallelQueryMiddleware", f"{__name__}.RecordScopes"],
        ROOT_URLCONF=__name__,
        TEMPLATES=demo_settings.TEMPLATES,
        DATABASES={"default": database},
        PARALLELQ=PARALLELQ,
        USE_TZ=True,
        TIME_ZONE="UTC",
        LANGUAGE_CODE="en",
        LOGGING={"version": 1, "disable_existing_loggers": False},
    )
    django.setup()
    got_request_exception.connect(_record_exception)
    for name in ("parallelq", "sqlalchemy.pool"):
        logger = logging.getLogger(name)
        logger.addHandler(TallyLog(logging.WARNING))
        logger.propagate = False


def prepare_schema() -> None:
    ensure_seeded()
    ROWS.metadata.create_all(get_engine())


# --- HTTP server and clients -------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the report


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        SERVER.add(f"exception server: {describe(sys.exc_info()[1])}")


def start_server() -> tuple[ThreadingWSGIServer, int]:
    server = make_server(
        "127.0.0.1",
        0,
        get_wsgi_application(),
        server_class=ThreadingWSGIServer,
        handler_class=QuietHandler,
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="stress-http", daemon=True
    )
    thread.start()
    return server, server.server_port  # type: ignore[return-value]


@dataclass
class Results:
    """What the clients saw: statuses and errors per kind, acknowledged write ids, latencies."""

    sent: int = 0
    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    acked: list[str] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int | None, body: bytes, error: str, took: float) -> None:
        with self.lock:
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), took)
            if error:
                self.errors[f"client {kind}: {error}"] += 1
                return
            self.statuses[(kind, status)] += 1  # type: ignore[index]
            if kind == "write" and status == 200:
                self.acked.append(json.loads(body)["id"])


class Budget:
    """Hand out request numbers until `limit` are taken or `seconds` have passed."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.deadline = limit, time.monotonic() + seconds
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self.taken >= self.limit or time.monotonic() >= self.deadline:
                return None
            self.taken += 1
            return self.taken - 1


def fetch(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client(port: int, budget: Budget, schedule: list[str], results: Results) -> None:
    while (number := budget.take()) is not None:
        kind = schedule[number % len(schedule)]
        started = time.monotonic()
        status, body, error = None, b"", ""
        try:
            status, body = fetch(port, KINDS[kind].path)
        except Exception as exc:  # counted and reported, never raised
            error = type(exc).__name__
        results.record(kind, status, body, error, time.monotonic() - started)


def drive(port: int, clients: int, budget: Budget, schedule: list[str]) -> Results:
    """Run `clients` threads until the budget is spent; return what they saw."""
    results = Results()
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=client, args=(port, budget, schedule, results), name=f"stress-client-{i}"
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # each ends within SOCKET_TIMEOUT of the budget running out
        thread.join()
    results.sent, results.seconds = budget.taken, time.monotonic() - started
    return results


# --- Fault injection ---------------------------------------------------------------------

OTHER_BACKENDS = (
    "FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


class FaultThread(threading.Thread):
    """Terminate every backend running pg_sleep(2), and note the most backends seen.

    Backends are counted before the kill, so that those just terminated, which take a
    moment to exit, are not counted.
    """

    def __init__(self, db: dict[str, Any]) -> None:
        super().__init__(name="stress-faults", daemon=True)
        self.conn = connect(db)
        self.stopping = threading.Event()
        self.killed = self.peak = 0
        self.error = ""

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                while not self.stopping.wait(FAULT_POLL):
                    self.poll(cur)
        except Exception as exc:  # reported as an error of the run
            self.error = describe(exc)

    def poll(self, cur: Any) -> None:
        cur.execute("SELECT count(*) " + OTHER_BACKENDS)
        self.peak = max(self.peak, cur.fetchone()[0])
        cur.execute(
            "SELECT pg_terminate_backend(pid) "
            + OTHER_BACKENDS
            + " AND state = 'active' AND query LIKE '%pg_sleep(2)%'"
        )
        self.killed += sum(1 for (ok,) in cur.fetchall() if ok)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=SOCKET_TIMEOUT)


# --- Checks ------------------------------------------------------------------------------


@dataclass
class State:
    """What is left over once the clients are done."""

    threads: int
    workers: int
    serving: int  # the HTTP server's request threads still alive
    checked_out: int
    backends: int
    idle_in_transaction: int
    sleeping: int
    open_scopes: int
    leaked_sessions: int
    rows: set[str]


def thread_census() -> tuple[int, int, int]:
    """Return threading.active_count(), parallelq's workers and the server's request threads."""
    names = [t.name for t in threading.enumerate()]
    workers = sum(name.startswith("parallelq") for name in names)
    serving = sum("process_request_thread" in name for name in names)  # ThreadingMixIn's
    return len(names), workers, serving


def quiesce() -> tuple[int, int]:
    """Wait (bounded) for the warm-up's requests to be torn down; return the thread baseline."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        threads, workers, serving = thread_census()
        torn_down = serving == 0 and all(s.closed for s in list(SERVER.scopes))
        if torn_down or time.monotonic() >= deadline:
            return threads, workers
        time.sleep(0.05)


def observe(conn: Any) -> State:
    threads, workers, serving = thread_census()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%'), "
            "count(*) FILTER (WHERE state = 'active' AND query LIKE '%pg_sleep%') " + OTHER_BACKENDS
        )
        backends, idle_in_transaction, sleeping = cur.fetchone()
        cur.execute("SELECT id FROM stress_write")
        rows = {row_id for (row_id,) in cur.fetchall()}
    scopes = list(SERVER.scopes)
    return State(
        threads=threads,
        workers=workers,
        serving=serving,
        checked_out=get_engine().pool.checkedout(),
        backends=backends,
        idle_in_transaction=idle_in_transaction,
        sleeping=sleeping,
        open_scopes=sum(not s.closed for s in scopes),
        leaked_sessions=sum(s.open_sessions for s in scopes),
        rows=rows,
    )


def leaked_threads(state: State, baseline: tuple[int, int]) -> int:
    """Threads beyond the baseline, not counting parallelq workers started since (bounded)."""
    total, workers = baseline
    return state.threads - total - (state.workers - workers)


def settle(conn: Any, baseline: tuple[int, int]) -> tuple[State, float]:
    """Poll until teardown is over or SETTLE_SECONDS pass; return the last state and the wait."""
    started = time.monotonic()
    while True:
        state = observe(conn)
        waited = time.monotonic() - started
        quiet = (
            state.checked_out == state.idle_in_transaction == state.sleeping == state.serving == 0
            and state.open_scopes == state.leaked_sessions == 0
            and leaked_threads(state, baseline) <= 0
        )
        if quiet or waited >= SETTLE_SECONDS:
            return state, waited
        time.sleep(0.1)


@dataclass
class Figure:
    name: str
    value: Any
    rule: str = ""  # e.g. "= 0"; empty for a figure that is only reported
    ok: bool = True


def response_figures(warm: Results, run: Results) -> list[Figure]:
    by_status: collections.Counter[int] = collections.Counter()
    for (_, status), n in run.statuses.items():
        by_status[status] += n
    unexpected = sum(
        n
        for results in (warm, run)
        for (kind, status), n in results.statuses.items()
        if status not in KINDS[kind].statuses
    )
    per_kind = ", ".join(
        f"{kind} {status}×{n}" for (kind, status), n in sorted(run.statuses.items())
    )
    return [
        Figure("warm-up requests", warm.sent),
        Figure("requests sent", run.sent),
        Figure("run time (s)", f"{run.seconds:.1f}"),
        Figure("throughput (req/s)", f"{run.sent / max(run.seconds, 1e-9):.1f}"),
        Figure("responses by status", _listing(by_status)),
        Figure("responses by kind", per_kind or "none"),
        Figure("unexpected statuses", unexpected, "= 0", unexpected == 0),
        Figure("slowest response by kind (s)", _listing(run.slowest, "{:.2f}")),
    ]


def fault_figures(
    faults: FaultThread, run: Results, counts: collections.Counter[str]
) -> list[Figure]:
    """Faults injected during the run (the warm-up's are not counted)."""
    long_requests = sum(n for (kind, _), n in run.statuses.items() if kind == "long")
    escaped = run.statuses[("long", 200)]
    return [
        Figure("faults: terminated backends", faults.killed, "> 0",
               faults.killed > 0 or long_requests == 0),
        Figure("faults: timeouts", counts["fault: timeouts"]),
        Figure("faults: failing tasks", counts["fault: failing tasks"]),
        Figure("long queries that escaped the kill", f"{escaped} of {long_requests}"),
        # A disconnect makes SQLAlchemy replace every pooled connection older than it.
        Figure("pool connections invalidated / opened", f"{counts['pool: connections invalidated']}"
               f" / {counts['pool: connections opened']}"),
    ]  # fmt: skip


def error_figures(warm: Results, run: Results, faults: FaultThread) -> list[Figure]:
    client_errors = warm.errors + run.errors
    if faults.error:
        client_errors[f"fault thread: {faults.error}"] += 1
    expected, unexpected = collections.Counter(), collections.Counter()
    for key, n in SERVER.counts.items():
        if key.startswith("exception "):
            kind, _, name = key.removeprefix("exception ").partition(": ")
            ok = kind in KINDS and name in KINDS[kind].exceptions
            (expected if ok else unexpected)[f"{kind}: {name}"] += n
    logs = {k.removeprefix("log "): n for k, n in SERVER.counts.items() if k.startswith("log ")}
    log_errors = sum(n for k, n in logs.items() if " ERROR:" in k or " CRITICAL:" in k)
    return [
        Figure("client errors", _listing(client_errors), "none", not client_errors),
        Figure("server exceptions, warm-up included (injected)", _listing(expected)),
        Figure(
            "server exceptions, warm-up included (unexpected)",
            _listing(unexpected),
            "none",
            not unexpected,
        ),
        Figure("log records (parallelq, sqlalchemy.pool)", _listing(logs)),
        Figure("error log records", log_errors, "= 0", log_errors == 0),
    ]


def leak_figures(
    state: State, baseline: tuple[int, int], waited: float, acked: list[str], peak: int
) -> list[Figure]:
    leaked = leaked_threads(state, baseline)
    lost = len(set(acked) - state.rows)
    cap = POOL_CAPACITY
    scopes = len(SERVER.scopes)
    return [
        Figure("teardown wait (s)", f"{waited:.1f}"),
        Figure("threads after warm-up / after run", f"{baseline[0]} / {state.threads}"),
        Figure("parallelq worker threads", state.workers, f"<= {WORKER_THREADS}",
               state.workers <= WORKER_THREADS),
        Figure("leaked threads", leaked, "= 0", leaked == 0),
        Figure("pool connections checked out", state.checked_out, "= 0", state.checked_out == 0),
        Figure("backends on the run's database", state.backends, f"<= {cap}",
               state.backends <= cap),
        # Sampled every FAULT_POLL s; a closed connection's backend may still be exiting
        # while its replacement connects, so this can pass the capacity for a moment.
        Figure("peak backends during the run (sampled)", peak),
        Figure("idle-in-transaction backends", state.idle_in_transaction, "= 0",
               state.idle_in_transaction == 0),
        Figure("scopes not closed", f"{state.open_scopes} of {scopes}", "= 0",
               state.open_scopes == 0),
        Figure("leaked sessions", state.leaked_sessions, "= 0", state.leaked_sessions == 0),
        Figure("pg_sleep still running", state.sleeping, "= 0", state.sleeping == 0),
        Figure("rows lost", f"{lost} of {len(acked)} acknowledged", "= 0", lost == 0),
    ]  # fmt: skip


def _listing(counts: dict[Any, Any], fmt: str = "{}") -> str:
    return ", ".join(f"{k}: {fmt.format(v)}" for k, v in sorted(counts.items())) or "none"


# --- Report ------------------------------------------------------------------------------


def report(figures: list[Figure], markdown: bool) -> int:
    """Print the figures and the verdict; return the exit status."""
    width = max(len(f.name) for f in figures)
    for f in figures:
        verdict = "" if not f.rule else ("  ok" if f.ok else "  FAILED")
        rule = f"  (must be {f.rule})" if f.rule else ""
        print(f"{f.name:<{width}}  {f.value}{rule}{verdict}")
    if markdown:
        print("\n| Figure | Value | Requirement | Result |\n| --- | --- | --- | --- |")
        for f in figures:
            result = "" if not f.rule else ("ok" if f.ok else "**FAILED**")
            print(f"| {f.name} | {f.value} | {f.rule} | {result} |")
    failed = [f.name for f in figures if not f.ok]
    print("stress: OK" if not failed else f"stress: FAILED ({'; '.join(failed)})")
    return 1 if failed else 0


# --- Main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
