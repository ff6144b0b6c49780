"""What the server sees: faults injected, exceptions, log records and pool events, by count.

``SERVER`` is filled by the views and Django hooks in ``app``, by the pool listeners and the
log handler here, and read by ``checks`` and ``report`` after the run.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import sqlalchemy as sa


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
