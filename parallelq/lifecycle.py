"""Make parallelq's Sessions, notice their unsaved writes, and end them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq import readmode

logger = logging.getLogger("parallelq")

# Session.info keys. _FLUSHED: the open transaction has flushed ORM changes.
# _MAYBE_WROTE: it ran a statement that is not a SELECT (text() included), which
# the database is asked about before a warning. _CONNECTION: the Connection the
# open transaction holds. _TASK: the task owning the Session.
_FLUSHED = "parallelq.flushed"
_MAYBE_WROTE = "parallelq.maybe_wrote"
_CONNECTION = "parallelq.connection"
_TASK = "parallelq.task"

_PG_IN_TRANSACTION = 2  # INTRANS in psycopg2 and psycopg 3 alike


class _TaskSession(orm.Session):
    """A task's Session, which looks at each statement before it runs (_before_statement).

    Every statement the ORM runs for a Session passes execute(), scalar() or
    scalars(): Query, get(), lazy and eager loads. A do_orm_execute listener
    would see them too, but it makes SQLAlchemy build an ORMExecuteState and
    prepare each statement twice: 13,000 more instructions per statement
    (callgrind), about 1.5 % of a primary-key lookup run as a task.
    """

    def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement, kw.get("execution_options"))
        return super().execute(statement, params, **kw)

    def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement, kw.get("execution_options"))
        return super().scalar(statement, params, **kw)

    def scalars(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement, kw.get("execution_options"))
        return super().scalars(statement, params, **kw)


# Task Sessions keep loaded attributes after commit: their objects outlive the
# task's transaction and are read in the caller's thread.
TaskSession = orm.sessionmaker(class_=_TaskSession, expire_on_commit=False)
RequestSession = orm.sessionmaker()


_S = TypeVar("_S", bound=orm.Session)


def new_session(factory: orm.sessionmaker[_S], engine: sa.Engine, task: Any = None) -> _S:
    """Return a Session of `factory` on `engine`, owned by `task` if given."""
    return factory(bind=engine, info={_TASK: task})


def end_session(session: orm.Session, owner: object) -> None:
    """Roll back and close `session`, first logging a WARNING if it holds unsaved writes.

    Args:
        owner: what the WARNING calls the Session, as str(owner).
    """
    try:
        if has_unsaved_writes(session):
            logger.warning(
                "%s ended with uncommitted changes; they were rolled back. "
                "Call session.commit() in the task or view that made them to keep them.",
                owner,
            )
    finally:
        session.close()
        session.info.pop(_TASK, None)  # the task refers to its Session too


def has_unsaved_writes(session: orm.Session) -> bool:
    """Return True if `session` has changes that its rollback would lose."""
    if session.new or session.deleted or session.dirty or session.info.get(_FLUSHED):
        return True
    connection = session.info.get(_CONNECTION)
    if not session.info.get(_MAYBE_WROTE) or connection is None or connection.invalidated:
        # No connection, or one an error has broken: the error reached the caller.
        return False
    return _transaction_wrote(connection)


def _transaction_wrote(connection: sa.Connection) -> bool:
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # invalidated: the error that did it reached the task
        return False
    if connection.dialect.name == "postgresql":
        if dbapi_connection.info.transaction_status != _PG_IN_TRANSACTION:
            # Idle, or failed: the error that failed it reached the task already.
            return False
        # An xid is assigned to a transaction at its first write, never for reads.
        return connection.exec_driver_sql("SELECT txid_current_if_assigned()").scalar() is not None
    if connection.dialect.name == "sqlite":
        # pysqlite opens a transaction only before INSERT, UPDATE, DELETE or REPLACE.
        return bool(dbapi_connection.in_transaction)
    return True


@sa.event.listens_for(TaskSession, "after_begin")
@sa.event.listens_for(RequestSession, "after_begin")
def _remember_connection(session: orm.Session, transaction: Any, connection: sa.Connection) -> None:
    # Asking the database about writes must not check out a connection of its own.
    session.info[_CONNECTION] = connection


@sa.event.listens_for(TaskSession, "after_begin")
def _lend_connection(session: orm.Session, transaction: Any, connection: sa.Connection) -> None:
    # Kept on the task so that another thread can cancel its running statement,
    # until the pool takes the connection back (see _reclaim_connection).
    task = session.info.get(_TASK)
    if task is not None:
        proxied = connection.connection
        if proxied.record_info is not None:  # None only for a detached connection
            proxied.record_info[_TASK] = task
            task.hold_connection(proxied.dbapi_connection)
    readmode.start(session, connection)
    if task is not None:
        # A task cancelled while it waited for this connection (its timeout
        # passed, or a sibling failed) had nothing to cancel on the server then:
        # it sends no statement now either.
        task.check_cancelled()


# The pool fires checkin before the connection can be handed to anyone else, so
# once the task has forgotten it here no cancel can reach another task's query.
@sa.event.listens_for(sa.pool.Pool, "checkin")
def _reclaim_connection(dbapi_connection: Any, record: Any) -> None:
    # record_info, like the proxied connection's: record.info is another dict.
    task = record.record_info.pop(_TASK, None)
    if task is not None:
        task.hold_connection(None)


def _before_statement(
    session: orm.Session, statement: Any, options: Mapping[str, Any] | None
) -> None:
    task = session.info.get(_TASK)
    if task is not None:
        task.check_cancelled()
    if not getattr(statement, "is_select", False):
        session.info[_MAYBE_WROTE] = True
    connection = session.info.get(_CONNECTION)
    if not readmode.is_plain_read(statement, options):
        readmode.want_transaction(session, connection)
    elif connection is None:
        readmode.connect_to_read(session)


@sa.event.listens_for(TaskSession, "before_flush")
def _before_flush(session: orm.Session, flush_context: Any, instances: Any) -> None:
    readmode.want_transaction(session, session.info.get(_CONNECTION))


@sa.event.listens_for(TaskSession, "after_flush")
@sa.event.listens_for(RequestSession, "after_flush")
def _mark_flushed(session: orm.Session, flush_context: Any) -> None:
    session.info[_FLUSHED] = True


@sa.event.listens_for(RequestSession, "do_orm_execute")
def _mark_maybe_wrote(state: orm.ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info[_MAYBE_WROTE] = True


@sa.event.listens_for(TaskSession, "after_transaction_end")
@sa.event.listens_for(RequestSession, "after_transaction_end")
def _forget_writes(session: orm.Session, transaction: orm.SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_FLUSHED, None)
        session.info.pop(_MAYBE_WROTE, None)
        session.info.pop(_CONNECTION, None)
        readmode.forget(session)
