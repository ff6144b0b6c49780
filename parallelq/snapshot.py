"""One snapshot for every task of a call: exported by a coordinating transaction, imported by each.

``parallel(..., consistent=True)`` opens a Snapshot: a connection of its own in a
REPEATABLE READ transaction that has run ``pg_export_snapshot()``. Each task's
Session imports it (``SET TRANSACTION SNAPSHOT``) before its first statement,
so all tasks read the same committed state. PostgreSQL keeps an exported
snapshot importable only while the exporting transaction is open, so the
Snapshot stays open until the call ends: a task that begins after that
cannot import it ("invalid snapshot identifier").
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq import pool, sessions
from parallelq.exceptions import ParallelQueryError, Timeout

# In a task Session's info: the id of the snapshot its first transaction imports.
SNAPSHOT = "parallelq.snapshot"

_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")  # as pg_export_snapshot() writes them


class Snapshot:
    """An open REPEATABLE READ transaction whose snapshot the tasks of one call import.

    It holds one pooled connection of `engine` until close(), one more than
    the call's tasks hold.
    """

    def __init__(self, engine: sa.Engine, connection: sa.Connection, snapshot_id: str) -> None:
        self.engine = engine
        self.id = snapshot_id
        self._connection: sa.Connection | None = connection

    def __repr__(self) -> str:
        state = "open" if self._connection is not None else "closed"
        return f"<parallelq.Snapshot {self.id} {state}>"

    @classmethod
    def export(cls, engine: sa.Engine, *, timeout: float | None = None) -> Snapshot:
        """Begin a REPEATABLE READ transaction on a connection of `engine` and export its snapshot.

        Args:
            timeout: the most seconds to wait for a pooled connection (with
                parallelq's pool; another pool waits its pool_timeout); None
                waits up to pool_timeout.

        Raises:
            ParallelQueryError: the database cannot export a snapshot (it is
                not PostgreSQL, or PostgreSQL refused).
            Timeout: no connection came free within `timeout`.
            sqlalchemy.exc.TimeoutError: none came free within pool_timeout.
        """
        check_exportable(engine)
        connection = _connect(engine, timeout)
        try:
            # psycopg2 sends BEGIN first; SET TRANSACTION must come before any query.
            snapshot_id = connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot()"
            ).scalar_one()
        except sa.exc.DBAPIError as exc:
            connection.close()
            raise ParallelQueryError(
                f"consistent=True: PostgreSQL could not export a snapshot ({exc.orig}). "
                "Leave consistent out on this server."
            ) from exc
        if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.fullmatch(snapshot_id):
            connection.close()
            raise ParallelQueryError(f"pg_export_snapshot() returned {snapshot_id!r}.")
        return cls(engine, connection, snapshot_id)

    def attach(self, session: orm.Session) -> None:
        """Make `session`'s first transaction import the snapshot, before its first statement.

        Its later transactions, after a commit or a rollback, are ordinary ones:
        they see what is committed when they begin, its own writes included.

        Raises:
            ValueError: `session` is not a task Session bound to the Snapshot's pool.
            ParallelQueryError: the Snapshot is closed.
        """
        if self._connection is None:
            raise ParallelQueryError(f"{self!r} is closed: no task can import it any more.")
        bind = session.bind
        if not isinstance(session, sessions.TaskSession.class_) or not (
            isinstance(bind, sa.Engine) and bind.pool is self.engine.pool
        ):
            raise ValueError(
                f"{self!r} can be imported only by a task Session bound to {self.engine!r}."
            )
        session.info[SNAPSHOT] = self.id

    def close(self) -> None:
        """End the exporting transaction and return its connection: no task can import it now."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()  # the pool rolls the transaction back

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_exportable(engine: sa.Engine) -> None:
    """Raise ParallelQueryError unless `engine`'s database can export a snapshot (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        raise ParallelQueryError(
            f"consistent=True needs PostgreSQL, which can export one snapshot for every "
            f"task to import (pg_export_snapshot()); this database is "
            f"{engine.dialect.name}, which cannot. Leave consistent out, or read what "
            "must agree in one task, whose transaction sees one state."
        )


@sa.event.listens_for(sessions.TaskSession, "after_begin")
def _import_snapshot(session: orm.Session, transaction: Any, connection: sa.Connection) -> None:
    # Registered after sessions.py's after_begin listeners, so a cancelled task
    # has refused to begin before this runs.
    snapshot_id = session.info.get(SNAPSHOT)
    if snapshot_id is None:
        return
    # One round trip: psycopg2 sends BEGIN with the first statement, and SET
    # TRANSACTION must precede any query in the transaction.
    connection.exec_driver_sql(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
        f"SET TRANSACTION SNAPSHOT '{snapshot_id}'"  # checked by _SNAPSHOT_ID
    )
    # Only now: a task whose import failed and that tries again must not
    # silently read a newer state.
    del session.info[SNAPSHOT]


def _connect(engine: sa.Engine, timeout: float | None) -> sa.Connection:
    try:
        if timeout is None:
            return engine.connect()
        waiter = _Waiter(timeout)
        token = pool.borrower.set(waiter)
        try:
            return engine.connect()
        finally:
            pool.borrower.reset(token)
            waiter.wake = None  # stops its timer, if one started
    except sa.exc.TimeoutError as exc:
        exc.add_note(
            "parallelq: consistent=True found no free connection for its snapshot within "
            "pool_timeout. The snapshot holds one connection more than the call's tasks; "
            "raise ENGINE_OPTIONS pool_size."
        )
        raise


class _Waiter:
    """The Snapshot's wait for a pooled connection, as parallelq's pool sees it (pool.Borrower).

    The pool sets `wake` only when it must wait; a timer then ends the wait
    once `timeout` has passed, and check_cancelled() raises Timeout. No thread
    is started when a connection is free.
    """

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self._wake: Callable[[], None] | None = None
        self._timer: threading.Timer | None = None

    @property
    def wake(self) -> Callable[[], None] | None:
        return self._wake

    @wake.setter
    def wake(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake is not None:
            self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), wake)
            self._timer.daemon = True
            self._timer.start()

    def check_cancelled(self) -> None:
        if time.monotonic() >= self.deadline:
            raise Timeout(
                f"consistent=True timed out after {self.timeout} s waiting for a pooled "
                "connection to export the call's snapshot; no task ran."
            )

    def lent(self, dbapi_connection: Any) -> None:
        pass  # nothing to cancel: the Snapshot runs one short statement

    def returned(self, dbapi_connection: Any) -> None:
        pass
