"""Check a pooled PostgreSQL connection is alive before lending it, mostly without a round trip.

SQLAlchemy's pool_pre_ping sends a statement on every checkout: a round trip per
task, which is most of what a short task costs. A server that restarts, or a
backend that is terminated, closes its socket, and a closed socket polls as
readable: that check costs a system call. A connection idle for longer than
PING_AFTER is pinged as pool_pre_ping would, since a network can also drop a
connection silently.
"""

from __future__ import annotations

import ctypes
import select
import time
from collections.abc import Callable
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
        now = time.monotonic()
        if _socket_readable(dbapi_connection) or (
            now - record.info.get(_CHECKED_IN, now) > PING_AFTER
            and not _ping(dialect, dbapi_connection)
        ):
            # The pool discards this connection and lends a fresh one.
            raise sa.exc.DisconnectionError("parallelq: the server closed this connection")

    return check


class _PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


def _poll_holding_the_gil() -> Callable[..., int] | None:
    # select.poll() releases the GIL for its system call, and under load the
    # thread then waits for it again: 1.7 ms per check in a two-thread test.
    # ctypes.PyDLL calls C without releasing the GIL, and poll() with a zero
    # timeout returns at once.
    try:
        poll = ctypes.PyDLL(None).poll
    except (OSError, AttributeError, TypeError):  # no libc poll() here, as on Windows
        return None
    # No argtypes: every argument is passed as a ready ctypes object (below),
    # and converting them through argtypes would double the call's cost.
    poll.restype = ctypes.c_int
    return poll


_poll = _poll_holding_the_gil()
_ONE_FD, _NO_WAIT = ctypes.c_ulong(1), ctypes.c_int(0)
# A pollfd per file descriptor, made once: it holds only the number and the
# events asked for, so a connection that reuses a closed one's number may use it.
_requests: dict[int, Any] = {}


def _socket_readable(dbapi_connection: Any) -> bool:
    # An idle connection receives nothing unless the server is closing it.
    fd = dbapi_connection.fileno()
    if _poll is not None:
        request = _requests.get(fd)
        if request is None:
            request = _requests[fd] = ctypes.byref(_PollFd(fd, select.POLLIN, 0))
        ready = _poll(request, _ONE_FD, _NO_WAIT)
        if ready >= 0:
            return ready > 0  # readable, hung up or in error: not fit to lend
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _ping(dialect: sa.Dialect, dbapi_connection: Any) -> bool:
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except dialect.loaded_dbapi.Error:
        return False
