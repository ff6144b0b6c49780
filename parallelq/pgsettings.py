"""parallelq's settings on each PostgreSQL connection: statement_timeout and its client check."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from parallelq.sessions import COMMITTED

# How often PostgreSQL (14 and later) checks, while a statement runs, that its
# client is still there: a killed server process leaves no statement running
# for longer than this. Set after the connection opens, as PgBouncer refuses
# it as a startup parameter.
CLIENT_CHECK_MS = 1000


def keep(engine: sa.Engine, statement_timeout: float | None) -> None:
    """Set statement_timeout and client_connection_check_interval on `engine`'s connections.

    Args:
        statement_timeout: seconds (STATEMENT_TIMEOUT), or None to leave it alone.
    """
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


def _check_interval(is_local: str) -> str:
    # PostgreSQL 13 and older have no such setting: WHERE leaves it alone there.
    return (
        f"SELECT set_config('client_connection_check_interval', '{CLIENT_CHECK_MS}', {is_local}) "
        "WHERE current_setting('server_version_num')::int >= 140000"
    )


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))
