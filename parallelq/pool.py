"""What parallelq's pool knows of its borrowers: who holds which connection, and who waits.

A task registers itself as the context's ``borrower`` while it runs. The pool
then tells it which DBAPI connections it holds, so that another thread can
cancel the statements running on them (cancel.py), and forgets them when they
are checked in, before anyone else can borrow them.

A task that finds every connection lent out waits for one, up to pool_timeout
(30 s by default). If its call's timeout passes meanwhile, a sibling fails or
its request ends, the task is cancelled, but it has no statement to cancel on
the server: CancellableQueuePool wakes its wait, and it raises the error it
raises before any statement once cancelled.

This module imports nothing else of parallelq: it knows a task only by the
``Borrower`` protocol.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.util import queue

_BORROWER = "parallelq.borrower"  # in a connection record's record_info


class Borrower(Protocol):
    """A parallelq task, as the pool sees it."""

    # Set while it waits for a connection: calling it ends the wait.
    wake: Callable[[], None] | None

    def check_cancelled(self) -> None:
        """Raise if the borrower was cancelled."""

    def lent(self, dbapi_connection: Any) -> None:
        """Note that the borrower holds `dbapi_connection` now."""

    def returned(self, dbapi_connection: Any) -> None:
        """Note that `dbapi_connection` went back to the pool."""


borrower: contextvars.ContextVar[Borrower | None] = contextvars.ContextVar(
    "parallelq.borrower", default=None
)


def track_borrowers(engine: sa.Engine) -> None:
    """Tell each borrower which of `engine`'s connections it holds, whatever the pool class."""
    sa.event.listen(engine, "checkout", _checkout)
    sa.event.listen(engine, "checkin", _checkin)


def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    current = borrower.get()
    if current is not None:
        # record_info lives as long as the record; info goes with an invalidated connection.
        record.record_info[_BORROWER] = current
        current.lent(dbapi_connection)


# The pool fires checkin before the connection can be lent to anyone else, so
# once its borrower has forgotten it here, no cancel can reach another's statement.
def _checkin(dbapi_connection: Any, record: Any) -> None:
    current = record.record_info.pop(_BORROWER, None)
    if current is not None:
        current.returned(dbapi_connection)


class _Connections(queue.Queue[Any]):
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(False)  # the common case: a connection is free
        except queue.Empty:
            if not block:
                raise
        current = borrower.get()
        if current is None:  # the request's own Session, engine.connect()
            return super().get(True, timeout)
        end = None if timeout is None else time.monotonic() + timeout
        with self.not_empty:
            # Set before the first check: a cancel that comes later calls it.
            current.wake = self._wake
            try:
                while self._empty():
                    current.check_cancelled()
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Empty
                    self.not_empty.wait(remaining)
                return super().get(False)  # its lock is this one, and reentrant
            finally:
                current.wake = None

    def _wake(self) -> None:
        # Every waiter wakes and looks at its own cancellation again.
        with self.not_empty:
            self.not_empty.notify_all()


class CancellableQueuePool(sa.QueuePool):
    """SQLAlchemy's QueuePool, but a cancelled borrower waits for no connection."""

    _queue_class = _Connections


def explain_timeout(exc: sa.exc.TimeoutError, name: str) -> None:
    """Note on `exc`, which task `name` raised waiting for a connection, what to resize.

    The note is printed with the traceback; the type stays SQLAlchemy's.
    """
    exc.add_note(
        f"parallelq: task {name!r} found no free connection in the pool within "
        "pool_timeout. Every request's own Session and every running task holds one; "
        "raise ENGINE_OPTIONS pool_size, or lower MAX_WORKERS (see check parallelq.W002)."
    )
