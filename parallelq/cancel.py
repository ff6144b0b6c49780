"""Cancel a statement running on a DBAPI connection from another thread."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("parallelq")


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
