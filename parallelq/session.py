"""The `session` proxy: the current task's Session, or the scope's own in its thread."""

from __future__ import annotations

from typing import Any

from sqlalchemy import orm

from parallelq.scope import current_scope
from parallelq.task import current_task


def current_session() -> orm.Session:
    """Return the Session of the running task, or else of the active scope.

    Raises:
        NoScopeError: no task, request or scope() is active in this context.
    """
    task = current_task()
    if task is not None:
        return task.get_session()
    return current_scope("parallelq.session").session


class SessionProxy:
    """Stand in for the current Session, as scoped_session does for its registry.

    ``session.execute(...)`` runs on the Session of the task it is called in,
    or, outside tasks, on the request's (or scope()'s) own Session. Call
    ``session()`` to get that Session itself.
    """

    def __call__(self) -> orm.Session:
        return current_session()

    def __getattr__(self, name: str) -> Any:
        return getattr(current_session(), name)

    def __repr__(self) -> str:
        return "<parallelq.session proxy>"


session = SessionProxy()
