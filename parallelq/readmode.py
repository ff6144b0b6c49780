"""Run a task's reads in autocommit, and give it a transaction from its first write on.

Under PostgreSQL's default READ COMMITTED every statement takes a snapshot of its
own, in a transaction or not, so wrapping a task's reads in BEGIN and ROLLBACK
costs two round trips and buys nothing. A task's psycopg2 connection therefore
starts in autocommit (a client-side switch) and leaves it before the first
statement that may write, lock rows or set a savepoint, and before the first
flush: from there on the task has an ordinary transaction, which its commit()
ends and its end rolls back. Only Engines with the default isolation level use
it; see install().

A connection a task read on stays in autocommit when it goes back to the pool,
so that the next task's reads need no switch: turning autocommit on or off
releases the GIL, and under load each release costs the thread a wait to get
it back. Every other checkout (the request's Session, engine.connect(),
raw_connection()) turns it off before the connection is lent.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE: no transaction open
_STATUS_READY = 1  # psycopg2.extensions.STATUS_READY: psycopg2 has sent no BEGIN
_WANTS_TRANSACTION = "parallelq.wants_transaction"  # Session.info: a write is coming
# Connection info (per DBAPI connection, unlike record_info): this module turned
# autocommit on, and it is on still.
_AUTOCOMMIT = "parallelq.autocommit"

_TEXT_READ = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_NOT_PLAIN = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b|\bINTO\b", re.IGNORECASE)

_NO_OPTIONS: Mapping[str, Any] = {}

_engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()

# Set in this thread while a task's Session checks out a connection to read on
# (connect_to_read()); every other checkout leaves autocommit.
_lending = threading.local()


def install(engine: sa.Engine, *, reset: bool) -> None:
    """Let task Sessions on `engine` read in autocommit.

    The caller checks that the driver is psycopg2 and that no isolation level
    was asked for: under REPEATABLE READ a task's reads share one snapshot,
    which only a transaction gives them.

    Args:
        reset: the Engine's pool was made with ``pool_reset_on_return=None``;
            roll back at check-in here instead, only where a transaction is
            open. psycopg2's rollback() of an idle connection sends nothing,
            but it releases the GIL, and under load the thread then waits to
            get it back (0.1 ms per call in a two-thread test).
    """
    _engines.add(engine)
    sa.event.listen(engine, "checkout", _checkout)
    sa.event.listen(engine, "checkin", _checkin_resetting if reset else _checkin)
    # Not the Engine's "savepoint" event: one Connection event listener makes
    # every statement on the Engine dispatch all of them (Engine._has_events),
    # which cost a task about 45 µs of CPU per lookup, a sixth of the lookup.
    dialect = engine.dialect
    dialect.do_savepoint = _autocommit_left_before(dialect.do_savepoint)  # type: ignore[method-assign]


def skip_idle_commits_and_rollbacks(engine: sa.Engine) -> None:
    """Let `engine`'s psycopg2 commit() and rollback() return at once when no transaction is open.

    psycopg2 then sends nothing, but it first releases the GIL to lock the
    connection; a Session that read in autocommit still ends its transaction
    with rollback(), so every reading task paid one release for nothing. The
    check is a narrower form of psycopg2's own (pq_commit, pq_abort skip
    unless the status is BEGIN), read from the connection object without its
    lock. In autocommit the status stays READY.
    """
    dialect = engine.dialect
    dialect.do_commit = _unless_idle(dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = _unless_idle(dialect.do_rollback)  # type: ignore[method-assign]


def _unless_idle(end: Any) -> Any:
    def end_unless_idle(connection: Any) -> None:
        dbapi_connection = getattr(connection, "dbapi_connection", connection)  # pool's proxy
        if (
            dbapi_connection is not None
            and not dbapi_connection.closed  # psycopg2 raises for a closed one: let it
            and dbapi_connection.status == _STATUS_READY
        ):
            return
        end(connection)

    return end_unless_idle


def is_plain_read(statement: Any, options: Mapping[str, Any] | None) -> bool:
    """Return True for a statement that neither writes, locks rows nor streams.

    Args:
        options: the execution options passed with it, if any; its own are read here.
    """
    options = options or _NO_OPTIONS
    own = getattr(statement, "_execution_options", _NO_OPTIONS)
    for key in ("stream_results", "yield_per"):
        if options.get(key) or own.get(key):
            return False  # psycopg2's server-side cursors live in a transaction
    if getattr(statement, "is_select", False):
        return getattr(statement, "_for_update_arg", None) is None
    if isinstance(statement, sa.TextClause):
        return bool(_TEXT_READ.match(statement.text)) and not _NOT_PLAIN.search(statement.text)
    return False


def connect_to_read(session: orm.Session) -> None:
    """Check out a connection for the plain read about to run in a task's Session.

    A connection still in autocommit from an earlier task's reads is lent as it
    is. Called only while the Session holds no connection.
    """
    if session.info.get(_WANTS_TRANSACTION) or session.bind not in _engines:
        return
    _lending.active = True
    try:
        session.connection()
    finally:
        _lending.active = False


def start(session: orm.Session, connection: sa.Connection) -> None:
    """Put a task's newly begun connection in autocommit, unless a write is coming."""
    if connection.engine not in _engines:
        return
    proxied = connection.connection
    if proxied.record_info is None:  # detached from the pool
        return
    own_level = "isolation_level" in connection.get_execution_options()
    if session.info.get(_WANTS_TRANSACTION) or own_level:
        # A write is coming, or the task asked for an isolation level of its own
        # (session.connection(execution_options=...)): keep its transaction.
        _leave_autocommit(proxied.info, proxied.dbapi_connection)
    elif not proxied.info.get(_AUTOCOMMIT):
        proxied.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        proxied.info[_AUTOCOMMIT] = True


def want_transaction(session: orm.Session, connection: sa.Connection | None) -> None:
    """Give the task a transaction before its next statement."""
    session.info[_WANTS_TRANSACTION] = True
    if connection is not None:
        _leave_autocommit(connection.connection.info, connection.connection.dbapi_connection)


def forget(session: orm.Session) -> None:
    """Let the Session's next transaction start in autocommit again."""
    session.info.pop(_WANTS_TRANSACTION, None)


def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if getattr(_lending, "active", False):
        _lending.active = False  # the first checkout is the task Session's own
        return
    _leave_autocommit(record.info, dbapi_connection)


def _checkin(dbapi_connection: Any, record: Any) -> None:
    # SQLAlchemy's own reset ran before this hook, and a BEGIN sent as text in
    # autocommit survives it: ask libpq.
    _keep_or_leave_autocommit(dbapi_connection, record, rolled_back=False)


def _checkin_resetting(dbapi_connection: Any, record: Any) -> None:
    if _in_transaction(dbapi_connection):
        try:
            if dbapi_connection.autocommit:  # a BEGIN sent as text: rollback() would skip it
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("ROLLBACK")
            else:
                dbapi_connection.rollback()
        except Exception as exc:  # noqa: BLE001 - what SQLAlchemy's own reset does
            record.invalidate(exc)
            return
    _keep_or_leave_autocommit(dbapi_connection, record, rolled_back=True)


def _keep_or_leave_autocommit(dbapi_connection: Any, record: Any, *, rolled_back: bool) -> None:
    # A connection a task read on keeps autocommit in the pool (see _checkout);
    # one that has left it, or has a transaction open, is made plain again.
    if (
        record.info.get(_AUTOCOMMIT)
        and dbapi_connection is not None
        and not dbapi_connection.closed
        and dbapi_connection.autocommit  # not reset by SQLAlchemy's isolation-level finalizer
        and (rolled_back or not _in_transaction(dbapi_connection))
    ):
        return
    _leave_autocommit(record.info, dbapi_connection)


def _in_transaction(dbapi_connection: Any) -> bool:
    # libpq's record of the last server message: no round trip, and the GIL kept.
    if dbapi_connection is None or dbapi_connection.closed:
        return False
    return bool(dbapi_connection.info.transaction_status != _IDLE)


def _leave_autocommit(info: dict[str, Any], dbapi_connection: Any) -> None:
    # psycopg2 sends BEGIN before the next statement; nothing goes to the server now.
    was_on = info.pop(_AUTOCOMMIT, False)
    if was_on and dbapi_connection is not None and not dbapi_connection.closed:
        dbapi_connection.autocommit = False


def _autocommit_left_before(savepoint: Any) -> Any:
    def do_savepoint(connection: sa.Connection, name: str) -> None:
        _leave_autocommit(connection.connection.info, connection.connection.dbapi_connection)
        savepoint(connection, name)

    return do_savepoint
