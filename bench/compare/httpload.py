"""The HTTP scenario: gunicorn (Django views) and uvicorn (bare ASGI) under wrk, interleaved."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from bench.compare import config, servers, wrk
from bench.compare.monitor import ConnectionPeaks
from bench.compare.stats import Samples

CLIENTS = (4, 16)


@dataclass(frozen=True)
class HttpContender:
    """One URL of one server, and what its handler does."""

    name: str
    server: str  # "gunicorn" or "uvicorn"
    path: str
    description: str


CONTENDERS = [
    HttpContender(
        "serial",
        "gunicorn",
        "/serial/",
        "Django view, one Session on its own Engine, queries in turn",
    ),
    HttpContender(
        "parallelq",
        "gunicorn",
        "/parallelq/",
        "Django view, `parallelq.parallel()` in the request's scope (ParallelQueryMiddleware)",
    ),
    HttpContender(
        "threads",
        "gunicorn",
        "/threads/",
        "Django view, the process's ThreadPoolExecutor of 8 threads, a Session per query",
    ),
    HttpContender(
        "asyncio",
        "uvicorn",
        "/",
        "bare ASGI app (no framework), `asyncio.gather` of an AsyncSession (asyncpg) per query",
    ),
]


@dataclass
class HttpSamples:
    """One contender at one client count, over the repetitions."""

    rps: Samples = field(default_factory=Samples)
    p50_ms: Samples = field(default_factory=Samples)
    p99_ms: Samples = field(default_factory=Samples)
    peak_open: int = 0  # backends, idle pooled ones included
    peak_busy: int = 0  # backends not idle
    seen: int = 0  # distinct backends seen during a run, the most of any repetition
    errors: int = 0
    requests: int = 0
    cpu_ms: Samples = field(default_factory=Samples)  # the server's CPU per request
    in_caller: Samples = field(default_factory=Samples)  # parallelq: share run by callers

    def add(
        self, result: wrk.WrkResult, monitor: ConnectionPeaks, app: str, cpu_seconds: float
    ) -> None:
        self.rps.add(result.requests_per_second)
        if result.requests:
            self.cpu_ms.add(cpu_seconds / result.requests * 1000)
        self.p50_ms.add(result.p50_ms)
        self.p99_ms.add(result.p99_ms)
        self.peak_open = max(self.peak_open, monitor.open[app])
        self.peak_busy = max(self.peak_busy, monitor.busy[app])
        self.seen = max(self.seen, monitor.seen(app))
        self.errors += result.errors
        self.requests += result.requests


@dataclass(frozen=True)
class HttpPlan:
    seconds: float  # one wrk run
    reps: int  # wrk runs per contender and client count
    warmup: float  # one untimed wrk run per contender first
    threads: int = servers.GUNICORN_THREADS  # gunicorn's request threads


Results = dict[tuple[str, int], HttpSamples]  # (contender, clients) -> samples


def connection_cap(contender: str) -> int:
    """Return the most PostgreSQL connections a contender's Engine(s) may open in all."""
    processes = servers.UVICORN_WORKERS if contender == "asyncio" else servers.GUNICORN_WORKERS
    return processes * config.pool_capacity()


def run(db: dict[str, Any], plan: HttpPlan) -> Results:
    """Serve every contender, warm each up, then load them round-robin per client count."""
    ports = {"gunicorn": servers.free_port(), "uvicorn": servers.free_port()}
    launches = [
        (servers.gunicorn_command(ports["gunicorn"], plan.threads), ports["gunicorn"], "/serial/"),
        (servers.uvicorn_command(ports["uvicorn"]), ports["uvicorn"], "/"),
    ]
    with contextlib.ExitStack() as stack:
        processes = {
            server: stack.enter_context(servers.serving(command, port, db, probe))
            for server, (command, port, probe) in zip(ports, launches, strict=True)
        }
        urls = {c.name: f"http://127.0.0.1:{ports[c.server]}{c.path}" for c in CONTENDERS}
        for contender in CONTENDERS:
            wrk.run(urls[contender.name], max(CLIENTS), plan.warmup)
        _parallelq_tasks(urls["parallelq"])  # the warm-up's counts are not measured
        results: Results = {(c.name, n): HttpSamples() for c in CONTENDERS for n in CLIENTS}
        turn = 0
        for _ in range(plan.reps):
            for clients in CLIENTS:
                shift = turn % len(CONTENDERS)
                turn += 1
                for contender in CONTENDERS[shift:] + CONTENDERS[:shift]:
                    cell = results[(contender.name, clients)]
                    process = processes[contender.server]
                    _measure(db, contender.name, urls[contender.name], process, clients, plan, cell)
        return results


def _parallelq_tasks(url: str) -> dict[str, int]:
    """Return and reset the parallelq view's task counts (bench.compare.httpviews)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", "/parallelq-tasks/")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def _measure(
    db: dict[str, Any],
    name: str,
    url: str,
    server: subprocess.Popen[bytes],
    clients: int,
    plan: HttpPlan,
    cell: HttpSamples,
) -> None:
    """Load `url` once while sampling pg_stat_activity; add the figures to `cell`."""
    app = config.app_name(name)
    cpu_before = servers.cpu_seconds(server)
    with ConnectionPeaks(db) as monitor:
        measured = wrk.run(url, clients, plan.seconds)
    cpu = servers.cpu_seconds(server) - cpu_before
    cell.add(measured, monitor, app, cpu)
    if name == "parallelq":
        counts = _parallelq_tasks(url)
        if counts["tasks"]:
            cell.in_caller.add(counts["in_caller"] / counts["tasks"])
    print(
        f"  http {name:<10} {clients:>2} clients: "
        f"{measured.requests_per_second:7.1f} req/s, p99 {measured.p99_ms:6.1f} ms, "
        f"connections {monitor.open[app]} open, {monitor.busy[app]} busy, "
        f"{monitor.seen(app)} seen, server CPU {cpu / max(measured.requests, 1) * 1e3:.2f} ms/req",
        flush=True,
    )
