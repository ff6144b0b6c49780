"""parallelq's settings on PostgreSQL: per connection, or per transaction behind a pooler."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from parallelq.exceptions import ParallelQueryError
from parallelq.sessions import COMMITTED

# How often PostgreSQL (14 and later) checks, while a statement runs, that its
# client is still there: a killed server process leaves no statement running
# for longer than this. Set after the connection opens, as PgBouncer refuses
# it as a startup parameter.
CLIENT_CHECK_MS = 1000

_IN_TRANSACTION = 2  # INTRANS in psycopg2 and psycopg 3 alike


def keep(engine: sa.Engine, statement_timeout: float | None, *, per_transaction: bool) -> None:
    """Set statement_timeout and client_connection_check_interval on `engine`'s connections.

    Args:
        statement_timeout: seconds (STATEMENT_TIMEOUT), or None to leave it alone.
        per_transaction: set them at the start of every transaction instead of
            once per connection (TRANSACTION_POOLING).
    """
    if per_transaction:
        local = _TransactionSettings(statement_timeout)
        sa.event.listen(engine, "begin", local.set)
        sa.event.listen(engine, "commit", local.reset)
    else:
        settings = _ConnectionSettings(statement_timeout)
        sa.event.listen(engine, "connect", settings.set)
        sa.event.listen(engine, "checkin", settings.reset_if_committed)


class _ConnectionSettings:
    """parallelq's settings on each PostgreSQL connection, kept there when tasks commit.

    A task's session-level SET (or set_config(…, false)) that it does not commit
    is undone by the pool's rollback; one that it commits would outlive the task
    on the pooled connection and reach another request. So a connection a task
    committed on is reset with RESET ALL when it is checked in, and these
    settings are made again.
    """

    def __init__(self, statement_timeout: float | None) -> None:
        # Plain SQL, no parameters: every PostgreSQL driver runs it alike.
        self.statements = [_check_interval("false")]
        if statement_timeout is not None:
            self.statements.append(f"SET statement_timeout = {_milliseconds(statement_timeout)}")

    def set(self, dbapi_connection: Any, record: Any = None, *, reset: bool = False) -> None:
        """Make the settings on a new connection (a connect listener)."""
        cursor = dbapi_connection.cursor()
        try:
            for statement in (["RESET ALL"] if reset else []) + self.statements:
                cursor.execute(statement)  # a SET lasts as long as the connection
        finally:
            cursor.close()
        dbapi_connection.commit()  # or the pool's rollback at check-in would undo them

    def reset_if_committed(self, dbapi_connection: Any, record: Any) -> None:
        """Reset a connection a task committed on (a checkin listener, after the rollback)."""
        if not record.info.pop(COMMITTED, False) or dbapi_connection is None:
            return
        try:
            self.set(dbapi_connection, reset=True)
        except Exception as exc:  # noqa: BLE001 - as SQLAlchemy's own reset: drop the connection
            record.invalidate(exc)


class _TransactionSettings:
    """parallelq's settings made local to each transaction, for a transaction pooler.

    A pooler such as PgBouncer in transaction pooling mode runs each
    transaction on whichever server connection is free: a session-level SET
    made once reaches only the server connection it ran on, and every client
    that borrows that one later. set_config(..., true) lasts until the end of
    the transaction it runs in, which runs on one server connection throughout.
    For the same reason a session-level SET that a transaction commits is
    undone in that transaction, just before its COMMIT: a reset at check-in
    would run on another server connection.
    """

    def __init__(self, statement_timeout: float | None) -> None:
        self.statement_timeout = statement_timeout
        # One statement, one round trip; the interval's SELECT comes last, as its WHERE is its own.
        selects = [_check_interval("true")]
        if statement_timeout is not None:
            milliseconds = _milliseconds(statement_timeout)
            selects.insert(0, f"SELECT set_config('statement_timeout', '{milliseconds}', true)")
        self.statement = " UNION ALL ".join(selects)

    def set(self, connection: sa.Connection) -> None:
        """Make the settings in the transaction `connection` begins (a begin listener).

        Raises:
            ParallelQueryError: STATEMENT_TIMEOUT is set, and the connection is
                in autocommit, where each statement is a transaction of its own.
        """
        if getattr(connection.connection.dbapi_connection, "autocommit", False):
            if self.statement_timeout is None:
                return  # client_connection_check_interval is a safeguard, not a limit
            raise ParallelQueryError(
                "PARALLELQ['STATEMENT_TIMEOUT'] cannot hold on a connection in autocommit "
                "through a transaction pooler (TRANSACTION_POOLING): each statement may run "
                "on another server connection. Run the statements in a transaction, or set "
                "statement_timeout on the database role (ALTER ROLE ... SET statement_timeout)."
            )
        # Run inside the begin, it begins no other transaction: the driver's
        # BEGIN goes first, in this transaction. Through SQLAlchemy, an error is
        # the DBAPIError any statement raises, and a lost connection is invalidated.
        connection.exec_driver_sql(self.statement).close()

    def reset(self, connection: sa.Connection) -> None:
        """Reset session-level settings in the transaction about to commit (a commit listener)."""
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None or getattr(dbapi_connection, "autocommit", False):
            return  # no transaction: its commit() does nothing
        if dbapi_connection.info.transaction_status == _IN_TRANSACTION:  # not failed, not idle
            connection.exec_driver_sql("RESET ALL").close()


def _check_interval(is_local: str) -> str:
    # PostgreSQL 13 and older have no such setting: WHERE leaves it alone there.
    return (
        f"SELECT set_config('client_connection_check_interval', '{CLIENT_CHECK_MS}', {is_local}) "
        "WHERE current_setting('server_version_num')::int >= 140000"
    )


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
