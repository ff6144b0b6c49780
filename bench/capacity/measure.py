"""The measured run: 1–4 gunicorn processes under wrk on loopback, pg_stat_activity sampled.

Each process is a gunicorn of its own (one gthread worker) on its own port, loaded by a
wrk of its own with a fixed number of keep-alive connections, so every process gets
exactly `clients` concurrent requests (one gunicorn with several workers would let the
kernel hand a keep-alive connection to any of them, unevenly). Each process's
connections carry an application_name of their own, so the peaks can be summed over the
processes that were loaded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.capacity import cpu
from bench.compare import servers, wrk
from bench.compare.monitor import ConnectionPeaks

APP = "bench-capacity"
SETTINGS_ENV = "BENCH_CAPACITY"  # JSON: the servers' PARALLELQ and the fan-out's queries_ms


def app_name(index: int) -> str:
    """Return the application_name of process `index`'s connections."""
    return f"{APP}-{index}"


@dataclass(frozen=True)
class Server:
    """One gunicorn process the run started."""

    index: int
    port: int
    process: Any  # subprocess.Popen

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}{target}"


@dataclass(frozen=True)
class Measured:
    """What one load of `processes` processes × `clients` clients measured."""

    processes: int
    clients: int
    seconds: float
    requests: int
    errors: int
    rps: float
    mean_ms: float  # Little's law: the clients in all over the requests per second
    p50_ms: float  # the processes' wrk p50s, averaged
    p99_ms: float  # the highest of the processes' wrk p99s
    peak_open: int  # backends of the loaded processes seen at once, idle pooled ones included
    peak_busy: int  # of those, the most seen at once not idle (a statement or a transaction)
    in_caller: float  # share of the tasks that ran in the caller's thread
    app_cpu_ms: float  # the loaded gunicorns' CPU per request
    db_cpu_ms: float  # the run's PostgreSQL's CPU per request
    machine_busy: float  # share of the machine's CPU busy during the load, others' too
    ours_busy: float  # share of it spent by the gunicorns, PostgreSQL and wrk


@contextlib.contextmanager
def serving(
    db: dict[str, Any],
    count: int,
    threads: int,
    parallelq: dict[str, Any],
    queries_ms: list[float],
    request_session: bool = True,
) -> Iterator[list[Server]]:
    """Start `count` gunicorn processes serving bench.capacity.views; stop them on exit."""
    started: list[Server] = []
    with contextlib.ExitStack() as stack:
        for index in range(count):
            options = dict(parallelq.get("ENGINE_OPTIONS", {}))
            options["connect_args"] = {"application_name": app_name(index)}
            settings = {"parallelq": {**parallelq, "ENGINE_OPTIONS": options}}
            views = {"queries_ms": queries_ms, "request_session": request_session}
            os.environ[SETTINGS_ENV] = json.dumps({**settings, **views})
            port = servers.free_port()
            command = servers.gunicorn_command(port, threads, "bench.capacity.wsgi:application")
            process = stack.enter_context(servers.serving(command, port, db, "/base/"))
            started.append(Server(index, port, process))
        yield started


def base_latency_ms(server: Server, seconds: float) -> float:
    """Return the mean latency of /base/ (the request's Session, no fan-out) at one client."""
    result = wrk.run(server.url("/base/"), 1, seconds)
    return 1000 / result.requests_per_second


class _Peaks(ConnectionPeaks):
    """ConnectionPeaks that also counts every process's backends together, under APP.

    Through PgBouncer a server connection carries the application_name of the client
    it was last lent to, so only the total means anything there.
    """

    def _count(self, rows: list[tuple[str, int, bool]]) -> None:
        super()._count(rows)
        ours = [(APP, pid, busy) for app, pid, busy in rows if app.startswith(f"{APP}-")]
        super()._count(ours)


def load(
    db: dict[str, Any],
    loaded: list[Server],
    clients: int,
    seconds: float,
    pooler: Any = None,
) -> Measured:
    """Load the `loaded` servers' /fanout/ with `clients` connections each for `seconds`.

    With `pooler` (the PgBouncer the servers connect through) the peaks are the
    database's backends in all, and PgBouncer's CPU counts as the database's.
    """
    for server in loaded:
        _counts(server)  # start counting from here
    clock = cpu.Clock(loaded, [pooler.process] if pooler else [])
    with _Peaks(db) as monitor, ThreadPoolExecutor(len(loaded)) as pool:
        results = list(pool.map(lambda s: wrk.run(s.url("/fanout/"), clients, seconds), loaded))
    used = clock.read()
    counts = [_counts(server) for server in loaded]
    tasks = sum(c["tasks"] for c in counts)
    requests = sum(r.requests for r in results)
    rps = sum(r.requests_per_second for r in results)
    names = [APP] if pooler else [app_name(s.index) for s in loaded]
    return Measured(
        processes=len(loaded),
        clients=clients,
        seconds=seconds,
        requests=requests,
        errors=sum(r.errors for r in results),
        rps=rps,
        mean_ms=1000 * clients * len(loaded) / rps,
        p50_ms=statistics.fmean(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        peak_open=sum(monitor.open[n] for n in names),
        peak_busy=sum(monitor.busy[n] for n in names),
        in_caller=sum(c["in_caller"] for c in counts) / tasks if tasks else 0.0,
        app_cpu_ms=1000 * used.app / max(requests, 1),
        db_cpu_ms=1000 * used.db / max(requests, 1),
        machine_busy=used.machine_busy,
        ours_busy=used.ours_busy,
    )


def _counts(server: Server) -> dict[str, int]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/counts/")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()
