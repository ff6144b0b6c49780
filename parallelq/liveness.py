"""Check a pooled PostgreSQL connection is alive before lending it, mostly without a round trip.

A server that restarts, or a backend that is terminated, closes its socket, and
an idle connection's socket then polls as readable: one poll() system call finds
it. A connection that sat in the pool for longer than PING_AFTER is pinged as
well, since a network can also drop a connection silently. SQLAlchemy's
pool_pre_ping pings on every checkout instead, which under load cost a request
of the benchmark's fan-out about a tenth of its throughput (docs/design.md,
*Liveness*); setting it in ENGINE_OPTIONS replaces this check.
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa

PING_AFTER = 5.0  # seconds a connection may sit in the pool before it is pinged

_CHECKED_IN = "parallelq.checked_in"  # in a connection's info: time.monotonic() at check-in


def watch(engine: sa.Engine) -> None:
    """Check every connection `engine`'s pool lends; instead of pool_pre_ping."""
    sa.event.listen(engine, "checkin", _remember_checkin)
    sa.event.listen(engine, "checkout", _check_alive(engine.dialect))


def _remember_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _check_alive(dialect: sa.Dialect) -> Any:
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        now = time.monotonic()
        idle = now - record.info.get(_CHECKED_IN, now)
        dead = _closed_by_server(dbapi_connection) or (
            idle > PING_AFTER and not _ping(dialect, dbapi_connection)
        )
        if dead:
            # The pool discards this connection and lends a fresh one.
            raise sa.exc.DisconnectionError("parallelq: the server closed this connection")

    return check


def _closed_by_server(dbapi_connection: Any) -> bool:
    # An idle connection receives nothing unless the server is closing it:
    # readable, hung up or in error, it is not fit to lend.
    fd = dbapi_connection.fileno()
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _ping(dialect: sa.Dialect, dbapi_connection: Any) -> bool:
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except dialect.loaded_dbapi.Error:
        return False
