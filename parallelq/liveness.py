"""Check a pooled PostgreSQL connection is alive before lending it, mostly without a round trip.

SQLAlchemy's pool_pre_ping sends a statement on every checkout: a round trip per
task, which is most of what a short task costs. A server that restarts, or a
backend that is terminated, closes its socket, and a closed socket polls as
readable: that check costs a system call. A connection idle for longer than
PING_AFTER is pinged as pool_pre_ping would, since a network can also drop a
connection silently.
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa

PING_AFTER = 5.0  # seconds a connection may sit in the pool before it is pinged

_CHECKED_IN = "parallelq.checked_in"


def install(engine: sa.Engine) -> None:
    """Check every connection `engine` lends; used instead of pool_pre_ping."""
    sa.event.listen(engine, "checkin", _remember_checkin)
    sa.event.listen(engine, "checkout", _check_alive(engine.dialect))


def _remember_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _check_alive(dialect: sa.Dialect) -> Any:
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle = time.monotonic() - record.info.get(_CHECKED_IN, time.monotonic())
        if _socket_readable(dbapi_connection) or (
            idle > PING_AFTER and not _ping(dialect, dbapi_connection)
        ):
            # The pool discards this connection and lends a fresh one.
            raise sa.exc.DisconnectionError("parallelq: the server closed this connection")

    return check


def _socket_readable(dbapi_connection: Any) -> bool:
    # An idle connection receives nothing unless the server is closing it.
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _ping(dialect: sa.Dialect, dbapi_connection: Any) -> bool:
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except dialect.loaded_dbapi.Error:
        return False
