"""Django signals: task_finished, which parallelq sends, and its receivers of Django's.

The receivers: a request's end, and a test database's creation and drop.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS
from django.dispatch import Signal

from parallelq.engine import dispose_engine
from parallelq.scoping import Scope, close_request_scope
from parallelq.timeline import TaskRecord

logger = logging.getLogger("parallelq")

# Sent once per finished task, from the thread that ran it and in the task's own
# context, before parallel() or the task's Future sees the task done. The sender
# is the task's Scope (request.parallelq, or what scope() yielded); the keyword
# arguments are name, start, duration and error, as in TaskRecord.
task_finished = Signal()


def announce(scope: Scope, record: TaskRecord) -> None:
    """Log the finished task at DEBUG on the parallelq logger and send task_finished."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "Task %r %s after %.3f ms",
            record.name,
            "finished" if record.error is None else f"raised {type(record.error).__name__}",
            record.duration * 1000,
            extra={"task_name": record.name, "duration": record.duration, "error": record.error},
        )
    if task_finished.receivers:  # as send_robust() checks first, without building its call
        # send_robust: a receiver's error is logged by Django ("django.dispatch")
        # and cannot take the task's own outcome from its caller.
        name, start, duration, error = record
        task_finished.send_robust(scope, name=name, start=start, duration=duration, error=error)


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
