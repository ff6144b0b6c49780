"""Measure the model's costs in-process against the run's PostgreSQL (Django configured).

Every figure is taken one request at a time, on an otherwise idle process, so that
the model, not the measurement, says what load does to them:

- each query's latency and database CPU, run on an open Session;
- what a task adds: ``parallel()`` of `width` trivial tasks against one trivial
  statement on an open Session, and the app's and database's CPU per task.

A request's own cost (HTTP, Django, the request's Session) needs a server: see
``request_costs()``, which loads one gunicorn's base view at one client.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import parallelq
from bench.capacity import cpu
from bench.capacity.model import Costs
from bench.compare import wrk

_SLEEP = sa.text("SELECT pg_sleep(:seconds)")
_TRIVIAL = sa.text("SELECT 1")
TRIVIAL_REPS = 300


BLOCKS = 5  # CPU per call is the least of this many blocks' means: other load inflates it
QUERY_SECONDS = 1.5  # spent measuring each distinct query


@dataclass(frozen=True)
class Sample:
    """A statement or call repeated: median wall time, app and database CPU per call (ms)."""

    wall_ms: float
    app_cpu_ms: float
    db_cpu_ms: float


def _repeat(call: Callable[[], Any], reps: int) -> Sample:
    call()  # warm: connections open, statements seen once
    walls: list[float] = []
    app: list[float] = []
    db: list[float] = []
    for _block in range(BLOCKS):
        count = max(1, reps // BLOCKS)
        started, db_started = time.process_time(), cpu.postgres_seconds()
        for _ in range(count):
            start = time.perf_counter()
            call()
            walls.append(time.perf_counter() - start)
        app.append((time.process_time() - started) / count)
        db.append((cpu.postgres_seconds() - db_started) / count)
    return Sample(1000 * statistics.median(walls), 1000 * min(app), 1000 * min(db))


def _on_open_session(statement: sa.TextClause, params: dict[str, Any], reps: int) -> Sample:
    with parallelq.scope():
        return _repeat(lambda: parallelq.session.execute(statement, params).all(), reps)


def _fanout(width: int, reps: int) -> Sample:
    def trivial() -> Any:
        return parallelq.session.execute(_TRIVIAL).all()

    with parallelq.scope():  # one scope: a request's, without its own Session's statement
        return _repeat(lambda: parallelq.parallel(*[trivial] * width), reps)


def _reps(ms: float) -> int:
    return max(BLOCKS * 2, round(QUERY_SECONDS * 1000 / max(ms, 1)))


def measure(queries_ms: list[float], width: int) -> Costs:
    """Return the costs of a fan-out of pg_sleep queries of `queries_ms`, `width` at once.

    The request's own costs are left at Costs' defaults; ``with_request()`` sets them.
    """
    trivial = _on_open_session(_TRIVIAL, {}, TRIVIAL_REPS)
    distinct = {
        ms: _on_open_session(_SLEEP, {"seconds": ms / 1000}, _reps(ms)) for ms in set(queries_ms)
    }
    samples = [distinct[ms] for ms in queries_ms]
    tasks = _fanout(width, TRIVIAL_REPS)
    return Costs(
        queries_ms=tuple(s.wall_ms for s in samples),
        query_app_cpu_ms=tuple(s.app_cpu_ms for s in samples),
        query_db_cpu_ms=tuple(s.db_cpu_ms for s in samples),
        # A trivial task's cost less its statement's, run on an open Session.
        task_ms=max(0.0, (tasks.wall_ms - trivial.wall_ms) / width),
        task_app_cpu_ms=max(0.0, tasks.app_cpu_ms / width - trivial.app_cpu_ms),
        task_db_cpu_ms=max(0.0, tasks.db_cpu_ms / width - trivial.db_cpu_ms),
    )


def with_request(costs: Costs, server: Any, seconds: float) -> Costs:
    """Return `costs` with the request's own, from `server`'s /base/ at one client.

    /base/ is the measured view without its fan-out: HTTP, Django, the middleware's
    scope, a SELECT 1 on the request's Session and its teardown. Three loads of a
    third of `seconds` (whole seconds, as wrk takes them): the median latency, the
    least CPU per request.
    """
    latency, app, db, client = [], [], [], []
    for _ in range(3):
        clock = cpu.Clock([server])
        result = wrk.run(server.url("/base/"), 1, max(1, round(seconds / 3)))
        used, requests = clock.read(), max(result.requests, 1)
        latency.append(1000 / result.requests_per_second)
        app.append(1000 * used.app / requests)
        db.append(1000 * used.db / requests)
        client.append(1000 * used.wrk / requests)
    return dataclasses.replace(
        costs,
        request_ms=statistics.median(latency),
        request_app_cpu_ms=min(app),
        request_db_cpu_ms=min(db),
        client_cpu_ms=min(client),
    )
