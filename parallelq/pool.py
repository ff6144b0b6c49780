"""A QueuePool whose tasks stop waiting for a connection once they are cancelled.

A task that finds every connection lent out waits for one, up to the pool's
pool_timeout (30 s by default). If its call's timeout passes meanwhile, a
sibling fails or its request ends, the task is cancelled, but it had no
statement to cancel on the server, and it went on waiting. A caller that runs
tasks itself (caller-runs, when no connection is idle) then overran its
parallel() timeout by as long, and a worker was held as long. Here a task's
cancel() wakes its wait, and the task raises the error it raises before any
statement once cancelled.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.util import queue

from parallelq.task import current_task


class _Connections(queue.Queue[Any]):
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(False)  # the common case: a connection is free
        except queue.Empty:
            if not block:
                raise
        task = current_task()
        if task is None:  # the request's own Session, engine.connect()
            return super().get(True, timeout)
        end = None if timeout is None else time.monotonic() + timeout
        with self.not_empty:
            task.waiting_in = self
            try:
                while self._empty():
                    task.check_cancelled()
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Empty
                    self.not_empty.wait(remaining)
                return super().get(False)  # its lock is this one, and reentrant
            finally:
                task.waiting_in = None

    def wake(self) -> None:
        """Wake every thread waiting for a connection, to look at its task again."""
        with self.not_empty:
            self.not_empty.notify_all()


class CancellableQueuePool(sa.QueuePool):
    """SQLAlchemy's QueuePool, but a cancelled task waits for no connection."""

    _queue_class = _Connections
