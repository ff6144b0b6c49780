"""Cancel a statement running on a DBAPI connection from another thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from concurrent.futures import Future, wait
from typing import Any, Protocol

logger = logging.getLogger("parallelq")

# How often a cancel is sent again while the tasks it is for have not returned.
RESEND_EVERY = 0.5


class Cancellable(Protocol):
    """A running task (task.Task): cancel() stops its statements on the server."""

    @property
    def future(self) -> Future[Any]: ...

    def cancel(self) -> bool: ...


def cancel_statement(dbapi_connection: Any) -> bool:
    """Ask the database to stop the statement running on `dbapi_connection`.

    psycopg2's cancel() sends a cancel request on a new socket, and sqlite3's
    interrupt() sets a flag the running statement checks; both are safe to call
    from a thread other than the one executing.

    Returns:
        True if a cancel was sent, False if the driver has no way to cancel.
    """
    for method in ("cancel", "interrupt"):
        cancel = getattr(dbapi_connection, method, None)
        if cancel is not None:
            try:
                cancel()
            except Exception:
                # A connection closed meanwhile has nothing left to cancel.
                logger.debug("Cancelling a statement failed", exc_info=True)
            return True
    return False


def cancel_until_done(tasks: Collection[Cancellable], seconds: float, why: str) -> None:
    """Cancel `tasks` until they have all returned or `seconds` have passed.

    A cancel that reaches the server just before the statement does is ignored
    there, so it is sent again every RESEND_EVERY seconds while a task runs. A
    WARNING says how many tasks still ran at the end, `why` they were cancelled.
    """
    deadline = time.monotonic() + seconds
    not_done = {t.future for t in tasks}
    while not_done and time.monotonic() < deadline:
        for task in tasks:
            task.cancel()
        wait(not_done, timeout=min(RESEND_EVERY, deadline - time.monotonic()))
        not_done = {f for f in not_done if not f.done()}
    if not_done:
        logger.warning(
            "%d task(s) still running %.0f s after %s; each ends its own Session when it returns.",
            len(not_done),
            seconds,
            why,
        )
