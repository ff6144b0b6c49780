"""The one SQLAlchemy Engine of the process, built lazily from settings."""

from __future__ import annotations

import atexit
import threading
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from parallelq import liveness, pgsettings
from parallelq.conf import Settings, get_settings
from parallelq.exceptions import ParallelQueryError
from parallelq.pool import CancellableQueuePool, track_borrowers

# Django's OPTIONS keys that Django itself consumes instead of passing to psycopg.
_DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "server_side_binding", "assume_role", "pool"})

_lock = threading.Lock()
_engine: sa.Engine | None = None
_engine_source: tuple[Any, ...] | None = None
# While sharing.py runs parallelq on a Django connection (a test's): the
# Connection every Session joins, on an Engine of that one connection, and the
# thread that owns it.
_shared: sa.Connection | None = None
_shared_thread: int | None = None


def get_engine() -> sa.Engine:
    """Return the configured Engine, building it on first use.

    The Engine is rebuilt when PARALLELQ or the default database's settings
    change, as they do when Django's test runner switches to the test database,
    so an Engine built before that never points at the real one.

    While parallelq.sharing.shared_connection() runs, this is the Engine of the
    Django connection it shares.

    Raises:
        ImproperlyConfigured: the settings name no usable database.
    """
    global _engine, _engine_source
    shared = _shared_connection()
    if shared is not None:
        return shared.engine
    source = _source()
    engine = _engine
    if engine is not None and _engine_source == source:
        return engine
    with _lock:
        if _engine is None or _engine_source != source:
            old, _engine = _engine, _build(source[0])
            _engine_source = source
            if old is not None:
                old.dispose()
        return _engine


def dispose_engine() -> None:
    """Close the Engine's pooled connections and forget it; the next use builds a new one."""
    global _engine, _engine_source
    with _lock:
        old, _engine, _engine_source = _engine, None, None
    if old is not None:
        old.dispose()


atexit.register(dispose_engine)


def get_bind() -> sa.Engine | sa.Connection:
    """Return what parallelq's Sessions bind to: the Engine, or the Connection being shared.

    Raises:
        ParallelQueryError: a Connection is shared, and this is not its thread.
    """
    shared = _shared_connection()
    return shared if shared is not None else get_engine()


def share(connection: sa.Connection | None) -> sa.Connection | None:
    """Make new Sessions join `connection`, owned by this thread (None: the Engine again).

    Returns:
        The Connection shared before, to give back to share() afterwards.
    """
    global _shared, _shared_thread
    previous, _shared = _shared, connection
    _shared_thread = threading.get_ident()
    return previous


def shares_connection() -> bool:
    """Return True while parallelq's Sessions join one shared Connection (sharing.py)."""
    return _shared is not None


def _shared_connection() -> sa.Connection | None:
    shared = _shared
    if shared is not None and threading.get_ident() != _shared_thread:
        raise ParallelQueryError(
            "parallelq runs on the test's own database connection here "
            "(parallelq.sharing.shared_connection()), which only the test's thread may use. "
            "Call parallel() or submit() from that thread instead of starting threads, or "
            "use a TransactionTestCase, where parallelq runs as in production."
        )
    return shared


def has_idle_connection(
    engine: sa.Engine | sa.Connection, capacity: int | None, promised: int = 0
) -> bool:
    """Return True if `engine`'s pool can lend one more connection without waiting.

    Args:
        capacity: the most connections the pool opens (Settings.pool_capacity);
            None: no bound is known, and there is always room.
        promised: connections that work already handed to threads will check
            out in a moment.
    """
    pool = engine.pool if isinstance(engine, sa.Engine) else None  # a shared Connection: always
    if capacity is None or not isinstance(pool, sa.QueuePool):
        return True
    return pool.checkedout() + promised < capacity


class DatabaseURLError(ImproperlyConfigured):
    """The settings name no database parallelq can connect to."""

    def __init__(self, msg: str, hint: str) -> None:
        super().__init__(f"{msg} {hint}")
        self.msg, self.hint = msg, hint


def database_url(conf: Settings | None = None) -> sa.URL:
    """Return the URL the Engine connects to: DATABASE_URL, else DATABASES['default'].

    Raises:
        DatabaseURLError: DATABASE_URL cannot be parsed or names a driver
            SQLAlchemy cannot load, the default database is neither PostgreSQL
            nor SQLite, or it is a private in-memory SQLite database.
    """
    conf = conf or get_settings()
    if conf.DATABASE_URL is None:
        url = _url_from_django(connections[DEFAULT_DB_ALIAS].settings_dict)
    else:
        try:
            url = sa.make_url(conf.DATABASE_URL)
        except sa.exc.ArgumentError as exc:
            raise DatabaseURLError(
                f"PARALLELQ['DATABASE_URL'] is not a SQLAlchemy database URL ({exc}).",
                "Use the form 'postgresql+psycopg2://user:password@host:5432/dbname' "
                "or 'sqlite:///path/to/file.sqlite3'.",
            ) from exc
        if url.drivername == "postgresql":
            # SQLAlchemy 2.1 would pick psycopg 3; parallelq installs psycopg2.
            url = url.set(drivername="postgresql+psycopg2")
        hint = "Install the driver's package, or use 'postgresql://…' (psycopg2) or 'sqlite:///…'."
        try:
            dialect = url.get_dialect()
        except sa.exc.NoSuchModuleError as exc:
            raise DatabaseURLError(
                f"PARALLELQ['DATABASE_URL'] names the driver {url.drivername!r}, which "
                "SQLAlchemy cannot load.",
                hint,
            ) from exc
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            raise DatabaseURLError(
                f"PARALLELQ['DATABASE_URL'] names the driver {url.drivername!r}, whose "
                f"package is not installed ({exc}).",
                hint,
            ) from exc
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise DatabaseURLError(
            "parallelq cannot share a private in-memory SQLite database between threads: "
            "each connection would see its own empty database.",
            "Use a file database, or a shared-cache URI such as "
            "'sqlite:///file:name?mode=memory&cache=shared&uri=true'.",
        )
    return url


def _source() -> tuple[Any, ...]:
    conf = get_settings()
    if conf.DATABASE_URL is not None:
        return (conf,)
    db = connections[DEFAULT_DB_ALIAS].settings_dict
    return (conf, db["ENGINE"], str(db["NAME"]), db["HOST"], db["PORT"], db["USER"])


def _url_from_django(db: dict[str, Any]) -> sa.URL:
    engine = db["ENGINE"]
    if engine == "django.db.backends.postgresql":
        return sa.URL.create(
            "postgresql+psycopg2",
            username=db["USER"] or None,
            password=db["PASSWORD"] or None,
            host=db["HOST"] or None,
            port=int(db["PORT"]) if db["PORT"] else None,
            database=db["NAME"] or None,
        )
    if engine == "django.db.backends.sqlite3":
        # Django's in-memory test database is a shared-cache URI that other
        # connections of this process can open too.
        name, _, query = str(db["NAME"]).partition("?")
        params = dict(parse_qsl(query))
        if name.startswith("file:"):
            params["uri"] = "true"
        return sa.URL.create("sqlite+pysqlite", database=name, query=params)
    raise DatabaseURLError(
        f"parallelq cannot derive a SQLAlchemy URL from DATABASES['default'], whose ENGINE "
        f"is {engine!r}: it knows the postgresql and sqlite3 backends.",
        "Set PARALLELQ['DATABASE_URL'] to the database's SQLAlchemy URL.",
    )


def _build(conf: Settings) -> sa.Engine:
    url = database_url(conf)
    options = conf.engine_options
    connect_args = dict(options.pop("connect_args", {}))
    postgresql = url.get_backend_name() == "postgresql"
    if conf.DATABASE_URL is None and postgresql:
        db_options = connections[DEFAULT_DB_ALIAS].settings_dict.get("OPTIONS", {})
        connect_args = {
            **{k: v for k, v in db_options.items() if k not in _DJANGO_ONLY_OPTIONS},
            **connect_args,
        }
    if url.get_backend_name() == "sqlite":
        # Every task has its own connection, so the pool must be one that hands
        # connections across threads (pysqlite picks SingletonThreadPool for
        # memory databases): a QueuePool, as below.
        connect_args.setdefault("check_same_thread", False)
    # QueuePool is the default for both backends; a pool the settings name is kept.
    options.setdefault("poolclass", CancellableQueuePool)
    engine = sa.create_engine(url, connect_args=connect_args, **options)
    track_borrowers(engine)
    if postgresql and not options.get("pool_pre_ping"):
        liveness.watch(engine)
    if postgresql:
        pgsettings.keep(engine, conf.STATEMENT_TIMEOUT, per_transaction=conf.TRANSACTION_POOLING)
    return engine
