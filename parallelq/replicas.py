"""Read replicas: an Engine per PARALLELQ['REPLICAS'] URL, round robin over those that answer.

A task routed to a replica (``using="replica"``, or a callable wrapped in
on_replica()) gets a Session on the next replica that answers. A replica that
fails to connect is skipped for RETRY_AFTER seconds, then tried again by the
next task routed to it; when none answers, the task runs on the primary in a
read-only transaction, so a write fails there as it would on a standby
(SQLSTATE 25006) and nothing reaches the primary.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

import sqlalchemy as sa

from parallelq.conf import Settings, get_settings
from parallelq.engine import DatabaseURLError, database_url
from parallelq.engine import _build as build_engine  # the primary's builder, reused

logger = logging.getLogger("parallelq")

P = ParamSpec("P")
T = TypeVar("T")

Using = Literal["primary", "replica"]
USING: tuple[Using, ...] = ("primary", "replica")

# Seconds a replica that did not answer is skipped; the next task routed to it
# after that tries it again, so a replica back up is used within this (plus
# a connect) of its return.
RETRY_AFTER = 5.0
# libpq's connect_timeout for replicas whose URL and connect_args set none, so
# that a replica that drops packets is given up on in seconds (libpq reads
# values below 2 as 2). One that refuses connections is given up on at once.
CONNECT_TIMEOUT = 2

_USING_ATTR = "__parallelq_using__"  # on_replica()'s mark on the callable it returns


def on_replica(fn: Callable[P, T]) -> Callable[P, T]:
    """Return `fn` marked to run on a read replica when submit() or parallel() runs it.

    ``submit(on_replica(report), year)`` passes its arguments on to ``report``
    as usual; only the task's Session is routed. Called directly, outside
    a task, it is ``fn`` itself.

    Raises:
        TypeError: fn is not callable, or is a coroutine function.
    """
    if not callable(fn) or inspect.iscoroutinefunction(fn):
        raise TypeError(f"on_replica() takes a plain function, not {fn!r}.")

    @functools.wraps(fn)
    def routed(*args: P.args, **kwargs: P.kwargs) -> T:
        return fn(*args, **kwargs)

    setattr(routed, _USING_ATTR, "replica")
    return routed


def using_of(fn: Callable[..., Any], default: Using = "primary") -> Using:
    """Return where `fn`'s task runs: "replica" if on_replica() marked it, else `default`."""
    return getattr(fn, _USING_ATTR, default)


def route(using: Using, primary: sa.Engine) -> sa.Engine:
    """Return the Engine a task Session routed to `using` is bound to.

    "primary" is `primary` itself. "replica" is the next replica that answers,
    or, when none does (or none is configured), `primary` in read-only
    transactions (PostgreSQL; another database is used as it is).
    """
    if using == "primary":
        return primary
    engine = get_replicas().pick()
    return engine if engine is not None else read_only(primary)


def read_only(engine: sa.Engine) -> sa.Engine:
    """Return `engine` whose connections begin read-only transactions (PostgreSQL).

    The same pool: psycopg2 sends BEGIN READ ONLY instead of BEGIN, and the
    connection is made read-write again when it goes back to the pool. Another
    database's Engine is returned as it is.
    """
    global _read_only
    if engine.dialect.name != "postgresql":
        return engine
    cached = _read_only
    if cached is None or cached[0] is not engine:
        # One for the current primary: an earlier one goes with its Engine.
        cached = _read_only = (engine, engine.execution_options(postgresql_readonly=True))
    return cached[1]


_read_only: tuple[sa.Engine, sa.Engine] | None = None


class _Replica:
    """One replica's Engine, and until when it is skipped."""

    def __init__(self, engine: sa.Engine, retry_after: float) -> None:
        self.engine = engine
        self.retry_after = retry_after
        self.name = engine.url.render_as_string(hide_password=True)
        self._lock = threading.Lock()
        self._down_until: float | None = None  # None: it answered last time

    def answers(self) -> bool:
        """Return True if a connection to the replica can be checked out now.

        Skipped while it is marked down; once its time is up, one caller tries
        it again while the others keep skipping it.
        """
        with self._lock:
            if self._down_until is not None:
                now = time.monotonic()
                if now < self._down_until:
                    return False
                self._down_until = now + self.retry_after  # this caller retries it
        try:
            # A pooled connection that is alive costs no round trip (liveness.py);
            # one the server has closed is replaced, and that connect must succeed.
            self.engine.connect().close()
        except sa.exc.DBAPIError as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            was_up = self._down_until is None
            self._down_until = time.monotonic() + self.retry_after
        if was_up:
            logger.warning(
                "Replica %s did not answer (%s); its tasks go to the other replicas or the "
                "primary, and it is tried again every %g s.",
                self.name,
                " ".join(str(getattr(exc, "orig", exc)).split()),  # libpq's lines, on one
                self.retry_after,
            )

    def _mark_up(self) -> None:
        with self._lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            logger.warning("Replica %s answers again; tasks are routed to it.", self.name)


class Replicas:
    """The replicas' Engines, lent round robin to the tasks routed to them."""

    def __init__(self, engines: list[sa.Engine], retry_after: float = RETRY_AFTER) -> None:
        self._replicas = [_Replica(engine, retry_after) for engine in engines]
        self._lock = threading.Lock()
        self._next = 0

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def engines(self) -> list[sa.Engine]:
        """Return the replicas' Engines, in the order of PARALLELQ['REPLICAS']."""
        return [replica.engine for replica in self._replicas]

    def pick(self) -> sa.Engine | None:
        """Return the Engine of the next replica that answers, or None if none does."""
        count = len(self._replicas)
        if not count:
            return None
        with self._lock:
            first, self._next = self._next, (self._next + 1) % count
        for i in range(count):
            replica = self._replicas[(first + i) % count]
            if replica.answers():
                return replica.engine
        return None

    def dispose(self) -> None:
        """Close the replicas' pooled connections."""
        for replica in self._replicas:
            replica.engine.dispose()


def replica_urls(conf: Settings | None = None) -> list[sa.URL]:
    """Return the URLs of PARALLELQ['REPLICAS'], each checked as DATABASE_URL is.

    Raises:
        DatabaseURLError: a URL cannot be parsed or names a driver SQLAlchemy
            cannot load; the message names it by its place in REPLICAS.
    """
    conf = conf or get_settings()
    urls = []
    for i, url in enumerate(conf.REPLICAS):
        try:
            urls.append(database_url(dataclasses.replace(conf, DATABASE_URL=url)))
        except DatabaseURLError as exc:
            # engine.py words its messages for DATABASE_URL, which this one is not.
            msg = exc.msg.replace("PARALLELQ['DATABASE_URL']", f"PARALLELQ['REPLICAS'][{i}]")
            raise DatabaseURLError(msg, exc.hint) from exc
    return urls


_lock = threading.Lock()
_replicas: Replicas | None = None
_replicas_source: Settings | None = None


def get_replicas() -> Replicas:
    """Return the replicas of PARALLELQ['REPLICAS'], building their Engines on first use.

    They are rebuilt when PARALLELQ changes, as get_engine() rebuilds the primary's.

    Raises:
        ImproperlyConfigured: PARALLELQ['REPLICAS'] names a URL parallelq cannot use.
    """
    global _replicas, _replicas_source
    conf = get_settings()
    replicas = _replicas
    if replicas is not None and _replicas_source == conf:
        return replicas
    with _lock:
        if _replicas is None or _replicas_source != conf:
            old, _replicas = _replicas, Replicas([_build(conf, url) for url in replica_urls(conf)])
            _replicas_source = conf
            if old is not None:
                old.dispose()
        return _replicas


def dispose_replicas() -> None:
    """Close the replicas' pooled connections and forget them; the next use builds them again."""
    global _replicas, _replicas_source
    with _lock:
        old, _replicas, _replicas_source = _replicas, None, None
    if old is not None:
        old.dispose()


atexit.register(dispose_replicas)


def _build(conf: Settings, url: sa.URL) -> sa.Engine:
    # Built as the primary's Engine is, from the same settings: pool, liveness
    # check, STATEMENT_TIMEOUT; only the URL differs, and a short connect_timeout.
    options = dict(conf.ENGINE_OPTIONS)
    connect_args = dict(options.get("connect_args", {}))
    libpq = url.get_backend_name() == "postgresql" and url.get_driver_name() in (
        "psycopg2",
        "psycopg",
    )
    if libpq and "connect_timeout" not in url.query and "connect_timeout" not in connect_args:
        options["connect_args"] = {**connect_args, "connect_timeout": CONNECT_TIMEOUT}
    replica = url.render_as_string(hide_password=False)
    return build_engine(dataclasses.replace(conf, DATABASE_URL=replica, ENGINE_OPTIONS=options))
