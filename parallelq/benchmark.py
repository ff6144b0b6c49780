"""What ``manage.py parallelq_bench`` measures: serial code against parallel(), on your database.

Both contenders run in one parallelq scope per repetition, interleaved, so a
busy machine slows both alike. *serial* runs the statements one after another
on the scope's own Session, as a view without parallelq would; *parallel*
runs each as a task of ``parallel()``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq.api import parallel
from parallelq.scoping import scope
from parallelq.sessions import session

_SQLITE_SLEEP = "parallelq_bench_sleep"


@dataclass
class Timings:
    """Seconds per repetition of each contender."""

    serial: list[float]
    parallel: list[float]

    @property
    def speedup(self) -> float:
        """Return serial's median over parallel's."""
        return statistics.median(self.serial) / statistics.median(self.parallel)

    def overhead_per_task(self, tasks: int) -> float:
        """Return what parallel() costs per task over serial, in seconds (negative: it saves)."""
        return (statistics.median(self.parallel) - statistics.median(self.serial)) / tasks


def sleep_statement(backend: str) -> sa.TextClause:
    """Return a statement that waits :seconds in a `backend` database ('postgresql', ...).

    Raises:
        ValueError: the database has no way to wait that this knows of.
    """
    if backend == "postgresql":
        return sa.text("SELECT pg_sleep(:seconds)")
    if backend == "sqlite":
        return sa.text(f"SELECT {_SQLITE_SLEEP}(:seconds)")
    raise ValueError(
        f"parallelq_bench cannot make a {backend} database wait: its fan-out knows "
        "PostgreSQL's pg_sleep() and a function it adds to SQLite. Run with --fanout-tasks 0 "
        "to time the overhead scenario alone."
    )


def fanout(engine: sa.Engine, tasks: int, seconds: float, repeat: int) -> Timings:
    """Time `tasks` statements that each wait `seconds` in the database."""
    statement = sleep_statement(engine.url.get_backend_name())

    def call() -> None:
        _prepare(session())
        session.execute(statement, {"seconds": seconds})

    return _interleaved(call, tasks, repeat)


def overhead(sql: str, tasks: int, repeat: int) -> Timings:
    """Time `tasks` runs of the trivial statement `sql`."""
    statement = sa.text(sql)

    def call() -> None:
        session.execute(statement).all()

    return _interleaved(call, tasks, repeat)


def _interleaved(call: Callable[[], None], tasks: int, repeat: int) -> Timings:
    contenders = {"serial": _serial, "parallel": _parallel}
    for run in contenders.values():
        run(call, tasks)  # untimed: opens the pool's connections and the worker threads
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(repeat):
        # The first contender alternates, so neither always runs on a warmer cache.
        order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(contenders[name](call, tasks))
    return Timings(**times)


def _serial(call: Callable[[], None], tasks: int) -> float:
    started = time.perf_counter()
    with scope():
        for _ in range(tasks):
            call()
    return time.perf_counter() - started


def _parallel(call: Callable[[], None], tasks: int) -> float:
    started = time.perf_counter()
    with scope():
        parallel(*[call] * tasks)
    return time.perf_counter() - started


def _prepare(current: orm.Session) -> None:
    # SQLite has no sleep of its own: each connection gets one, which waits
    # with the GIL released, as a database server's wait would.
    connection = current.connection()
    if connection.dialect.name == "sqlite":
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi_connection.create_function(_SQLITE_SLEEP, 1, time.sleep)
