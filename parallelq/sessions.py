"""parallelq's Sessions: the `session` proxy, their making and ending, the unsaved-write warning."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq.exceptions import NoScopeError
from parallelq.proxy import SessionProxy

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

# In a pooled connection's info: a task committed on it, so session-level
# settings it made may outlive the task (engine.py resets them at check-in).
COMMITTED = "parallelq.committed"

NO_SCOPE = (
    "{what} needs an active parallelq scope. Add "
    "'parallelq.middleware.ParallelQueryMiddleware' to MIDDLEWARE, or wrap the code "
    "in `with parallelq.scope():`."
)

# What `session` stands for in this context: the running task's get_session(),
# else the scope's (set by scoping.py and task.py, which own the two).
current: contextvars.ContextVar[Callable[[], orm.Session] | None] = contextvars.ContextVar(
    "parallelq.session", default=None
)


def _current_session() -> orm.Session:
    get = current.get()
    if get is None:
        raise NoScopeError(NO_SCOPE.format(what="parallelq.session"))
    return get()


session = SessionProxy(_current_session)


class _TaskSession(orm.Session):
    """A task's Session, which looks at each statement before it runs (_before_statement).

    Every statement the ORM runs for a Session passes execute(), scalar() or
    scalars(): Query, get(), lazy and eager loads. A do_orm_execute listener
    would see them too, but it makes SQLAlchemy build an ORMExecuteState and
    prepare each statement twice: 13,000 more instructions per statement
    (callgrind), about 1.5 % of a primary-key lookup run as a task.
    """

    def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement)
        return super().execute(statement, params, **kw)

    def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement)
        return super().scalar(statement, params, **kw)

    def scalars(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        _before_statement(self, statement)
        return super().scalars(statement, params, **kw)


# Task Sessions keep loaded attributes after commit: their objects outlive the
# task's transaction and are read in the caller's thread.
TaskSession = orm.sessionmaker(class_=_TaskSession, expire_on_commit=False)
RequestSession = orm.sessionmaker()


_S = TypeVar("_S", bound=orm.Session)


def new_session(
    factory: orm.sessionmaker[_S], bind: sa.Engine | sa.Connection, task: Any = None
) -> _S:
    """Return a Session of `factory` on `bind`, owned by `task` if given.

    A Connection (one shared with Django, sharing.py) is joined through a
    SAVEPOINT: the Session's commit releases it and its rollback and close roll
    back to it, so the transaction around it is never ended.
    """
    if isinstance(bind, sa.Connection):
        return factory(bind=bind, info={_TASK: task}, join_transaction_mode="create_savepoint")
    return factory(bind=bind, info={_TASK: task})


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


class Registry:
    """The live Sessions of one scope, and what logs call each: ended at its teardown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[orm.Session, object] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def add(self, session: orm.Session, owner: object) -> None:
        """Register `session`, which logs call str(owner)."""
        with self._lock:
            self._owners[session] = owner

    def discard(self, session: orm.Session) -> None:
        """Forget `session`, which its owner has ended itself."""
        with self._lock:
            self._owners.pop(session, None)

    def end_all(self, but: Collection[orm.Session | None] = ()) -> None:
        """End every Session but those in `but`, whose owners still use them, and forget them."""
        with self._lock:
            owners, self._owners = self._owners, {}
        for session, owner in owners.items():
            if session not in but:
                try:
                    end_session(session, owner)
                except Exception:
                    logger.exception("Closing %s failed", owner)


def has_unsaved_writes(session: orm.Session) -> bool:
    """Return True if `session` has changes that its rollback would lose."""
    if session.new or session.deleted or session.dirty or session.info.get(_FLUSHED):
        return True
    connection = session.info.get(_CONNECTION)
    if not session.info.get(_MAYBE_WROTE) or connection is None or connection.invalidated:
        # No connection, or one an error has broken: the error reached the caller.
        return False
    if isinstance(session.bind, sa.Connection):
        # In a SAVEPOINT of a shared transaction, whose writes the database
        # cannot tell from those of the transaction around it.
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


def _before_statement(session: orm.Session, statement: Any) -> None:
    task = session.info.get(_TASK)
    if task is not None:
        task.check_cancelled()
    if not getattr(statement, "is_select", False):
        session.info[_MAYBE_WROTE] = True


@sa.event.listens_for(TaskSession, "after_begin")
@sa.event.listens_for(RequestSession, "after_begin")
def _remember_connection(session: orm.Session, transaction: Any, connection: sa.Connection) -> None:
    # Asking the database about writes must not check out a connection of its own.
    session.info[_CONNECTION] = connection


@sa.event.listens_for(TaskSession, "after_begin")
def _refuse_if_cancelled(session: orm.Session, transaction: Any, connection: Any) -> None:
    # A task cancelled while it waited for this connection (its timeout passed,
    # or a sibling failed) had nothing to cancel on the server then: it sends
    # no statement now either.
    task = session.info.get(_TASK)
    if task is not None:
        task.check_cancelled()


@sa.event.listens_for(TaskSession, "after_commit")
def _note_commit(session: orm.Session) -> None:
    connection = session.info.get(_CONNECTION)
    if connection is not None and not connection.invalidated:
        connection.connection.info[COMMITTED] = True


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
