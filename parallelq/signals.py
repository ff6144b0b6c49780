"""Receivers of Django's signals: a request's end; a test database's creation and drop."""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS

from parallelq.engine import dispose_engine
from parallelq.scoping import close_request_scope


# Register an event to cancel the request's unfinished tasks, roll back and
# close its Sessions, and forget them, once the response is closed.
def close_request_sessions(**kwargs: Any) -> None:
    close_request_scope()


# Register an event to close the Engine's pooled connections whenever Django
# opens a connection to no database in particular (NO_DB_ALIAS), as it does to
# create, clone and drop a test database, the stock runner and pytest-django
# alike: PostgreSQL drops no database, nor copies a template, that has
# connections. Nothing else opens one; the next task reconnects.
def close_pool_for_database_admin(*, connection: Any, **kwargs: Any) -> None:
    if connection.alias == NO_DB_ALIAS:
        dispose_engine()
