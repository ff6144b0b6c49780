"""SessionProxy, the class of ``parallelq.session``: typed with Session's own signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from sqlalchemy import orm

_T = TypeVar("_T")


class _Forward(Generic[_T]):
    """A SessionProxy attribute: what `read` returns from the current Session.

    Its type is the type `read` returns, so ``session.execute`` has the
    installed SQLAlchemy's own Session.execute signature, overloads included,
    with nothing copied that could drift from it. Setting it sets the
    attribute of the current Session, as scoped_session's setters do.
    """

    def __init__(self, read: Callable[[orm.Session], _T]) -> None:
        self._read = read
        self._name = ""

    def __set_name__(self, owner: type[SessionProxy], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, proxy: None, owner: type[SessionProxy]) -> _Forward[_T]: ...

    @overload
    def __get__(self, proxy: SessionProxy, owner: type[SessionProxy]) -> _T: ...

    def __get__(self, proxy: SessionProxy | None, owner: type[SessionProxy]) -> _T | _Forward[_T]:
        if proxy is None:
            return self
        return self._read(proxy())

    def __set__(self, proxy: SessionProxy, value: _T) -> None:
        setattr(proxy(), self._name, value)


class SessionProxy:
    """Stand in for the current Session, as scoped_session does for its registry.

    ``session.execute(...)`` runs on the Session of the task it is called in,
    or, outside tasks, on the request's (or scope()'s) own Session. Call
    ``session()`` to get that Session itself.

    Type checkers see the Session methods and attributes scoped_session
    proxies, in SQLAlchemy 2.0 and 2.1 alike; any other Session attribute is
    still forwarded at run time, but reach it through ``session()`` to have it
    checked (``session().merge_all(...)``, new in 2.1).
    """

    def __init__(self, get: Callable[[], orm.Session]) -> None:
        self._get = get

    def __call__(self) -> orm.Session:
        return self._get()

    if not TYPE_CHECKING:
        # Hidden from type checkers, so that a misspelt name is their error.
        def __getattr__(self, name: str) -> Any:
            return getattr(self(), name)

    def __repr__(self) -> str:
        return "<parallelq.session proxy>"

    # Methods, as sqlalchemy/orm/scoping.py lists them for scoped_session.
    __contains__ = _Forward(lambda s: s.__contains__)
    __iter__ = _Forward(lambda s: s.__iter__)
    add = _Forward(lambda s: s.add)
    add_all = _Forward(lambda s: s.add_all)
    begin = _Forward(lambda s: s.begin)
    begin_nested = _Forward(lambda s: s.begin_nested)
    bulk_insert_mappings = _Forward(lambda s: s.bulk_insert_mappings)
    bulk_save_objects = _Forward(lambda s: s.bulk_save_objects)
    bulk_update_mappings = _Forward(lambda s: s.bulk_update_mappings)
    close = _Forward(lambda s: s.close)
    commit = _Forward(lambda s: s.commit)
    connection = _Forward(lambda s: s.connection)
    delete = _Forward(lambda s: s.delete)
    execute = _Forward(lambda s: s.execute)
    expire = _Forward(lambda s: s.expire)
    expire_all = _Forward(lambda s: s.expire_all)
    expunge = _Forward(lambda s: s.expunge)
    expunge_all = _Forward(lambda s: s.expunge_all)
    flush = _Forward(lambda s: s.flush)
    get = _Forward(lambda s: s.get)
    get_bind = _Forward(lambda s: s.get_bind)
    get_one = _Forward(lambda s: s.get_one)
    identity_key = _Forward(lambda s: s.identity_key)
    is_modified = _Forward(lambda s: s.is_modified)
    merge = _Forward(lambda s: s.merge)
    object_session = _Forward(lambda s: s.object_session)
    query = _Forward(lambda s: s.query)
    refresh = _Forward(lambda s: s.refresh)
    reset = _Forward(lambda s: s.reset)
    rollback = _Forward(lambda s: s.rollback)
    # mypy cannot match Session.scalar's overload for TypedReturnsRows[Never] with
    # itself (mypy issue 20651, noted in SQLAlchemy 2.1); the type is still Session's.
    scalar = _Forward(lambda s: s.scalar)  # type: ignore[arg-type, return-value, unused-ignore]
    scalars = _Forward(lambda s: s.scalars)

    # Attributes.
    autoflush = _Forward(lambda s: s.autoflush)
    bind = _Forward(lambda s: s.bind)
    deleted = _Forward(lambda s: s.deleted)
    dirty = _Forward(lambda s: s.dirty)
    identity_map = _Forward(lambda s: s.identity_map)
    info = _Forward(lambda s: s.info)
    is_active = _Forward(lambda s: s.is_active)
    new = _Forward(lambda s: s.new)
    no_autoflush = _Forward(lambda s: s.no_autoflush)
