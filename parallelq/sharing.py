"""parallelq on Django's own database connection, inside the transaction Django owns.

django.test.TestCase runs each test in a transaction on Django's connection,
which parallelq's pooled connections cannot see into. shared_connection() runs
parallelq on that connection instead: get_engine() is an Engine whose one
connection is Django's DBAPI connection, every Session joins it through a
SAVEPOINT, and tasks run one by one in the thread that owns it. A migration can
use it to create SQLAlchemy tables in the migration's own transaction.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from parallelq import engine
from parallelq.conf import get_settings
from parallelq.exceptions import ParallelQueryError

# What SQLAlchemy sends to make and to end a savepoint (SQLCompiler.visit_savepoint etc.).
_SAVEPOINT_STATEMENT = re.compile(r"(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT) (\S+)$")


@contextlib.contextmanager
def shared_connection(using: str = DEFAULT_DB_ALIAS) -> Iterator[sa.Connection]:
    """Run parallelq on Django's connection `using`, in the transaction Django has open there.

    While the block runs, in this thread: get_engine() is an Engine of that one
    connection, whose commit, rollback and close do nothing (the transaction is
    Django's); every parallelq Session joins it through a SAVEPOINT, which its
    commit releases and its rollback or end rolls back; and parallel() and
    submit() run their tasks one by one in this thread, where Django's ORM uses
    the same connection.

    Yields:
        An SQLAlchemy Connection on Django's connection, in Django's transaction.

    Raises:
        ImproperlyConfigured: parallelq's Engine is not derived from
            DATABASES[using] (`using` is not 'default', or DATABASE_URL is set),
            or Django uses psycopg 3 where parallelq uses psycopg2.
        ParallelQueryError: Django has no transaction open on `using`.
    """
    django_connection = connections[using]
    _check(using, django_connection)
    shared_engine = _engine_on(django_connection.connection)
    _Savepoints(django_connection).watch(shared_engine)
    shared = shared_engine.connect()
    shared.begin()  # SQLAlchemy's record of Django's transaction: no statement is sent
    previous = engine.share(shared)
    try:
        yield shared
    finally:
        engine.share(previous)
        shared.close()
        shared.engine.dispose()


def _check(using: str, django_connection: Any) -> None:
    if using != DEFAULT_DB_ALIAS:
        raise ImproperlyConfigured(
            f"parallelq.sharing.shared_connection({using!r}): parallelq uses "
            "DATABASES['default'], so only that connection can be shared with it."
        )
    if get_settings().DATABASE_URL is not None:
        raise ImproperlyConfigured(
            "parallelq.sharing.shared_connection() cannot share Django's connection while "
            "PARALLELQ['DATABASE_URL'] points parallelq at a database of its own. Leave it "
            "unset in the test settings: parallelq then derives its Engine from "
            "DATABASES['default'], Django's test database."
        )
    if not django_connection.in_atomic_block:
        raise ParallelQueryError(
            "parallelq.sharing.shared_connection() needs a transaction that Django holds "
            f"open on DATABASES[{using!r}]: a django.test.TestCase test (or "
            "parallelq.testing.TestCase), pytest-django's db fixture, a migration, or "
            "transaction.atomic(). Under a TransactionTestCase parallelq runs as in "
            "production, on connections of its own."
        )
    module = type(django_connection.connection).__module__
    if django_connection.vendor == "postgresql" and not module.startswith("psycopg2"):
        raise ImproperlyConfigured(
            "Django connects to PostgreSQL with psycopg 3 and parallelq with psycopg2, so "
            "parallelq cannot run on Django's connection. Uninstall psycopg where the tests "
            "run, so that Django uses psycopg2 too."
        )


def _engine_on(dbapi_connection: Any) -> sa.Engine:
    """Return an Engine whose one connection is `dbapi_connection`, which it never ends.

    Its dialect is parallelq's own Engine's, set up by that Engine's first
    connection, with the options ENGINE_OPTIONS gave it.
    """
    own = engine.get_engine()
    with own.connect():  # a dialect learns the server's version on its first connection
        pass
    prepare = _psycopg2_json if own.dialect.driver == "psycopg2" else None
    unowned = _Unowned(dbapi_connection, prepare)
    pool = sa.StaticPool(lambda: unowned, dialect=own.dialect)
    return sa.Engine(pool, own.dialect, own.url)


def _psycopg2_json(cursor: Any) -> None:
    # Per cursor, which outranks Django's registration on its connection.
    from psycopg2 import extras  # type: ignore[import-untyped]

    loads = get_settings().engine_options.get("json_deserializer") or json.loads
    extras.register_default_json(cursor, loads=loads)
    extras.register_default_jsonb(cursor, loads=loads)


class _Savepoints:
    """Keep SQLAlchemy's savepoints from ending Django's, or failing on those Django ended.

    PostgreSQL ends a savepoint together with every savepoint made after it, and
    so an atomic block that ends also ends the savepoints SQLAlchemy made inside
    it. So SQLAlchemy ends its savepoint as usual only while it is the last one
    made, by SQLAlchemy and by Django's atomic blocks alike. Otherwise, it began
    inside an atomic block that has ended since, or before one still open, and
    SQLAlchemy ends a new savepoint of the same name, made just then, instead:
    what was written in the old one stays in Django's transaction, rolled back
    with the test.
    """

    def __init__(self, django_connection: Any) -> None:
        self.django = django_connection
        # SQLAlchemy's savepoints not ended yet, oldest first, each with
        # Django's atomic savepoints that were open when it was made.
        self.open: list[tuple[tuple[int, str], tuple[str | None, ...]]] = []

    def watch(self, shared_engine: sa.Engine) -> None:
        # The savepoint event comes before SQLAlchemy names the savepoint; the
        # statement names it.
        sa.event.listen(shared_engine, "before_cursor_execute", self.before)

    def before(self, conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        match = _SAVEPOINT_STATEMENT.match(statement)
        if match is None:
            return
        verb, name = match.groups()
        entry = ((id(conn), name), tuple(self.django.savepoint_ids))
        if verb == "SAVEPOINT":
            self.open.append(entry)
            return
        last = self.open[-1] if self.open else None
        self.open = [made for made in self.open if made[0] != entry[0]]
        if last != entry:
            cursor.execute(f"SAVEPOINT {name}")  # on the cursor: the statement after it ends it


class _Unowned:
    """Django's DBAPI connection as SQLAlchemy sees it: it may run statements, never end them.

    commit(), rollback() and close() do nothing: the transaction and the
    connection are Django's. Cursors read json and jsonb as parallelq's own
    connections do: Django's psycopg2 connection leaves jsonb as text, for its
    JSONField to parse.
    """

    __slots__ = ("_connection", "_prepare")

    def __init__(self, connection: Any, prepare: Callable[[Any], None] | None) -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_prepare", prepare)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self._connection.cursor(*args, **kwargs)
        if self._prepare is not None:
            self._prepare(cursor)
        return cursor

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)
